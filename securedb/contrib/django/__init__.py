"""Django database backends that connect through securedb.

PostgreSQL only for now (Django's MySQL backend is built on mysqlclient, not PyMySQL)::

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
still wants ``NAME``).
Every new connection gets a fresh or cached credential with verify-full TLS.
"""
