"""Trust store, SSLContext and libpq TLS parameters, and the bundled RDS CA."""
