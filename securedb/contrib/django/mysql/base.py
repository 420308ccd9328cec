"""Django's MySQL backend on PyMySQL, with connections opened by securedb.

Django's MySQL backend imports ``MySQLdb`` (mysqlclient). This module first calls
``pymysql.install_as_MySQLdb()``, so that name is PyMySQL for the whole process; PyMySQL
reports a mysqlclient-compatible ``version_info`` (2.2.x since PyMySQL 1.1), which
passes Django's version check, so nothing else is patched. Each connection is
securedb's PyMySQL connection: verify-full TLS for the real endpoint name (also through
a tunnel), an IAM token or secret, no cleartext password without TLS, one retry after a
refusal. Django's parameters (charset, converters, ``client_flag``, OPTIONS) go through
the adapter's merge point.
"""

from __future__ import annotations

import sys
from typing import Any

import pymysql
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.utils.asyncio import async_unsafe  # type: ignore[import-untyped]

from securedb.contrib.django._backend import Endpoint, driver_args
from securedb.errors import ConfigError

pymysql.install_as_MySQLdb()
# Django imports MySQLdb.constants and MySQLdb.converters. Without these aliases Python
# would load second copies of PyMySQL's modules under those names and rebind `pymysql.err`
# (and others) to the copies, whose exception classes PyMySQL itself never raises.
for _name, _module in list(sys.modules.items()):
    if _name.startswith("pymysql."):
        sys.modules.setdefault("MySQLdb" + _name.removeprefix("pymysql"), _module)

from django.db.backends.mysql import base  # type: ignore[import-untyped]  # noqa: E402

if base.Database is not pymysql:
    raise ImproperlyConfigured(
        "Django's MySQL backend was loaded with mysqlclient before securedb's; name "
        "'securedb.contrib.django.mysql' as the ENGINE of every MySQL database (securedb's "
        "backend runs on PyMySQL)"
    )


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.securedb = Endpoint("mysql")

    @async_unsafe  # type: ignore[untyped-decorator]
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = self.securedb_connect(**conn_params)
        # As Django does for mysqlclient: no bytes-to-bytes encoder.
        if connection.encoders.get(bytes) is bytes:
            connection.encoders.pop(bytes)
        return connection

    def securedb_connect(self, **params: Any) -> Any:
        """A connection for Django's parameters: the database it asks for, OPTIONS checked."""
        options = self.settings_dict.get("OPTIONS") or {}
        if options.get("pool"):
            raise ConfigError(
                "OPTIONS['pool'] is for PostgreSQL (Django has no MySQL pool); use "
                "CONN_MAX_AGE for persistent connections"
            )
        args = driver_args(params, self.settings_dict)
        dbname = None if "database" in options else args.pop("database", None)
        return self.securedb.connector(self.settings_dict).connect(dbname, **args)
