"""Settings for the Django example, read from the environment as in production.

- ``SECUREDB_URL``: ``postgresql://user@host:port/dbname``, the writer (cluster) endpoint.
- ``SECUREDB_AUTH``, ``SECUREDB_SECRET_ID``, ``SECUREDB_TUNNEL``, ``SECUREDB_CA_BUNDLE``,
  ``SECUREDB_REGION``, ``SECUREDB_IAM_TOKEN_TTL``, ``SECUREDB_SECRET_TTL``: securedb's
  options, as ``OPTIONS["securedb"]`` (docs/configuration.md).
- ``DJANGO_SECRET_KEY`` (required), ``DJANGO_ALLOWED_HOSTS`` (comma-separated, default
  ``localhost,127.0.0.1``), ``DJANGO_POOL_SIZE`` (default 2).

Django's pool (``OPTIONS["pool"]``) keeps a fixed number of connections per worker
process (a sync worker serves one request at a time; a second connection is ready while
one is replaced); each new one gets verify-full TLS and the cached IAM token or secret.
With the pool, Django wants ``CONN_MAX_AGE = 0``, and ``CONN_HEALTH_CHECKS`` makes the
pool check a connection before
handing it out, so none to a writer that is gone is used after a failover.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware"]  # a JSON API: no sessions, CSRF
USE_TZ = True

# securedb's options this app reads, each from SECUREDB_<NAME> when it is set.
SECUREDB_OPTIONS = (
    *("auth", "secret_id", "tunnel", "ca_bundle", "region"),
    *("iam_token_ttl", "secret_ttl", "connect_timeout"),
)

_url = urlsplit(os.environ["SECUREDB_URL"])
_options = {
    name: os.environ[f"SECUREDB_{name.upper()}"]
    for name in SECUREDB_OPTIONS
    if os.environ.get(f"SECUREDB_{name.upper()}")
}

DATABASES = {
    "default": {
        "ENGINE": "securedb.contrib.django.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": unquote(_url.username or ""),
        "HOST": _url.hostname or "",
        "PORT": _url.port or 5432,
        "CONN_MAX_AGE": 0,  # Django's pool wants 0: the pool keeps the connections
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "securedb": _options,
            "pool": {"min_size": int(os.environ.get("DJANGO_POOL_SIZE", "2"))},  # max = min
        },
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"securedb": {"handlers": ["console"], "level": "INFO"}},
}
