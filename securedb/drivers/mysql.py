"""The PyMySQL adapter."""
