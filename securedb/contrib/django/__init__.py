"""A Django database backend."""
