"""Helpers for Lambda handlers behind RDS Proxy."""
