"""The securedb MySQL backend for Django on PyMySQL (``ENGINE``: this package's name)."""
