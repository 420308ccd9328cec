"""What the PostgreSQL and MySQL backends share: securedb's side of a Django connection.

Everything is read from the wrapper's ``settings_dict`` when a connection is opened,
never frozen when the wrapper is made: Django's test runner builds copies of the
settings (``NAME=None`` for its maintenance connection) and then switches ``NAME`` to
the test database in place, and Django's own tests replace ``settings_dict`` outright.
The endpoint, user and securedb options make the `Config` (and so the credential
cache, shared by every wrapper of the same identity through the connector registry);
the database name is each connection's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from securedb.config import Config
from securedb.connector import Connector
from securedb.errors import ConfigError

__all__ = ["Endpoint", "config_from_settings", "driver_args", "securedb_options"]

# Django copies these settings into its connection parameters; securedb takes them from
# the Config instead. The same key written in OPTIONS goes on, for the merge point to refuse.
SETTINGS_PARAMS = {"user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}
# Where the password comes from when it is not PASSWORD: setting both is ambiguous.
PASSWORD_SOURCE = {"iam": "is an IAM token", "secret": "comes from the secret"}


def securedb_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``OPTIONS["securedb"]``: securedb's options (auth, secret_id, tunnel, ca_bundle ...)."""
    value = (settings.get("OPTIONS") or {}).get("securedb") or {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            "OPTIONS['securedb'] must be a dict of securedb options, like {'auth': 'iam'}"
        )
    return dict(value)


def config_from_settings(engine: str, settings: Mapping[str, Any]) -> Config:
    """A Config from USER, PASSWORD, HOST, PORT and ``OPTIONS["securedb"]``, without NAME.

    With ``secret_id`` and no HOST, an RDS-managed secret supplies the endpoint.

    Raises:
        ConfigError: a setting or an option is invalid; PASSWORD is set with an IAM token
            or a secret for the credential (as `Config` refuses a password in the URL).
    """
    host, port = settings.get("HOST") or "", settings.get("PORT") or ""
    options = securedb_options(settings)
    userinfo = quote(settings.get("USER") or "", safe="")
    auth = options.get("auth") or ("secret" if options.get("secret_id") else "password")
    if settings.get("PASSWORD") and auth in PASSWORD_SOURCE:
        raise ConfigError(
            f"PASSWORD is set but OPTIONS['securedb'] uses auth={auth!r}, whose password "
            f"{PASSWORD_SOURCE[auth]}; remove PASSWORD, or use auth='password'"
            + (" without secret_id" if auth == "secret" else "")
        )
    if settings.get("PASSWORD") and auth == "password":
        userinfo += ":" + quote(settings["PASSWORD"], safe="")
    netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{port}" if host and port else "")
    return Config.from_url(f"{engine}://{netloc}", **options)


class Endpoint:
    """The connector for a wrapper's current settings, made again if they change."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self._key: str | None = None
        self._connector: Connector | None = None

    def connector(self, settings: Mapping[str, Any]) -> Connector:
        key = repr([settings.get(name) for name in SETTINGS_PARAMS.values()])
        key += repr(sorted(securedb_options(settings).items()))
        if self._connector is None or key != self._key:
            old, self._connector = self._connector, self.new_connector(settings)
            self._key = key
            if old is not None:
                old.close()
        return self._connector

    def new_connector(self, settings: Mapping[str, Any]) -> Connector:
        """A connector of its own (for a pool that outlives the wrapper); same shared cache."""
        return Connector(config_from_settings(self.engine, settings), owned=True)


def driver_args(params: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Django's connection parameters, less securedb's options and what came from settings.

    What is left (Django's adapters, cursor factory, charset, converters, and OPTIONS)
    goes to the adapter's merge point, which refuses endpoint and TLS-weakening keys.
    """
    options = settings.get("OPTIONS") or {}
    return {
        k: v
        for k, v in params.items()
        if k != "securedb" and (k not in SETTINGS_PARAMS or k in options)
    }
