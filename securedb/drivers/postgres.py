"""The psycopg 3 adapter."""
