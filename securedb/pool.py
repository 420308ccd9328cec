"""pool(): a psycopg_pool ConnectionPool that resolves credentials per connection."""
