"""Django's PostgreSQL backend, with connections opened by securedb.

Django builds its connection parameters as usual; the endpoint and credentials are
securedb's (verify-full TLS, IAM token or secret, one retry after a refusal), and the rest
(Django's adapters context, cursor factory, ``prepare_threshold``) goes to psycopg.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import psycopg
from django.db.backends.postgresql import base  # type: ignore[import-untyped]

from securedb.config import Config
from securedb.connector import Connector
from securedb.errors import ConfigError

# Django copies these from its settings; securedb takes them from the URL it builds.
SETTINGS_PARAMS = {"user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}


class _Driver:
    """psycopg as Django sees it, except that ``connect`` goes through securedb."""

    def __init__(self, connector: Connector, settings: dict[str, Any]) -> None:
        self._connector = connector
        self._settings = settings

    def connect(self, **params: Any) -> psycopg.Connection[Any]:
        """Django's parameters: the dbname it asks for, and OPTIONS through the merge point.

        Only what Django copied from the settings is left out; the same key coming from
        OPTIONS goes on, to be refused.
        """
        extra = {
            k: v
            for k, v in params.items()
            if k not in SETTINGS_PARAMS or str(v) != str(self._settings.get(SETTINGS_PARAMS[k]))
        }
        conn: psycopg.Connection[Any] = self._connector.connect(**extra)
        return conn

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]
    def __init__(self, settings_dict: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        settings_dict = dict(settings_dict)
        options = dict(settings_dict.get("OPTIONS") or {})
        securedb_options = options.pop("securedb", {})
        if options.get("pool"):
            raise ConfigError(
                "OPTIONS['pool'] would open connections without securedb; leave it out "
                "(Django's persistent connections, CONN_MAX_AGE, work)"
            )
        settings_dict["OPTIONS"] = options
        super().__init__(settings_dict, *args, **kwargs)
        connector = Connector(config_from_settings(settings_dict, securedb_options))
        self.Database = _Driver(connector, settings_dict)


def config_from_settings(settings: dict[str, Any], options: dict[str, Any]) -> Config:
    """A securedb Config from Django's NAME, USER, PASSWORD, HOST, PORT and securedb options."""
    host, port = settings.get("HOST") or "", settings.get("PORT") or ""
    if not host and options.get("secret_id"):
        return Config.from_url(**options)
    userinfo = quote(settings.get("USER") or "", safe="")
    if settings.get("PASSWORD"):
        userinfo += ":" + quote(settings["PASSWORD"], safe="")
    netloc = f"{userinfo}@{host}" + (f":{port}" if port else "")
    return Config.from_url(f"postgresql://{netloc}/{settings.get('NAME') or ''}", **options)
