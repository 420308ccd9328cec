"""The securedb PostgreSQL backend for Django (``ENGINE``: this package's name)."""
