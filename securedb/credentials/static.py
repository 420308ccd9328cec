"""A static password, for local development."""
