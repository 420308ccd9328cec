"""Django database backends that connect through securedb.

``securedb.contrib.django.postgresql`` (psycopg 3) and ``securedb.contrib.django.mysql``
(PyMySQL, installed as ``MySQLdb``)::

    DATABASES = {
        "default": {
            "ENGINE": "securedb.contrib.django.postgresql",
            "NAME": "app",
            "USER": "app_user",
            "HOST": "mydb.cluster-abc123.eu-west-2.rds.amazonaws.com",
            "PORT": 5432,
            "OPTIONS": {"securedb": {"auth": "iam"}},
        }
    }

``OPTIONS["securedb"]`` takes securedb's options (``auth``, ``secret_id``, ``tunnel``,
``ca_bundle`` ...); with ``secret_id`` the secret may supply ``HOST`` and ``PORT`` (Django
still wants ``NAME``). Every new connection, and on PostgreSQL every connection of
Django's pool (``OPTIONS["pool"]``), gets a fresh or cached credential with verify-full
TLS. Settings are read when a connection opens, so the test runner's copies and its
switch to the test database work; per-thread wrappers share one credential cache.
"""
