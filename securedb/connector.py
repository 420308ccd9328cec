"""The connect path every entry point shares: credential, driver, one retry on refusal.

``connect()`` reads as its steps: take the cached credential, open the driver's own
connection with verify-full TLS, and if the database refuses the credential (a rotated
password, an expired token) fetch it once more and retry once. Failures leave as
`securedb.errors` classes that say what to do.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from securedb import drivers, tls
from securedb.config import Config, is_loopback, split_options
from securedb.credentials import RefreshAheadCache, cache_for
from securedb.credentials.base import Credential
from securedb.drivers import Failure
from securedb.errors import AuthenticationError, ConfigError, SecureDBError, TLSError

__all__ = ["Connector", "connect"]

logger = logging.getLogger("securedb.connect")


class Connector:
    """Opens connections for one `Config`; shared by `connect`, `engine` and `pool`."""

    def __init__(self, cfg: Config) -> None:
        self.cache: RefreshAheadCache = cache_for(cfg)
        self._cfg = cfg
        self._resolved = cfg if cfg.engine and cfg.host else None
        self._lock = threading.Lock()

    @property
    def config(self) -> Config:
        """The configuration with the endpoint filled in (from an RDS secret if need be)."""
        return self._resolved or self._resolve(self.cache.get())

    def _resolve(self, cred: Credential) -> Config:
        with self._lock:
            if self._resolved is None:
                self._resolved = self._cfg.with_secret_fields(
                    {**cred.fields, "username": cred.user}
                )
            return self._resolved

    def connect(self, **extra: Any) -> Any:
        """A new driver connection, verified TLS, credentials retried once if refused."""
        cred = self.cache.get()
        cfg = self._resolved or self._resolve(cred)
        driver = drivers.load(cfg.engine or "")
        try:
            return driver.connect(cfg, cred, **extra)
        except Exception as exc:
            failure = driver.classify(exc)
            if failure is not Failure.AUTH or cfg.auth == "password":
                raise _translate(exc, failure, cfg) from exc
            logger.info(
                "%s refused %s (version %s); refreshing once",
                cfg.endpoint,
                self.cache.source.name,
                cred.version,
            )
        self.cache.invalidate(cred)
        cred = self.cache.get()
        try:
            return driver.connect(cfg, cred, **extra)
        except Exception as exc:
            raise _translate(exc, driver.classify(exc), cfg) from exc

    def close(self) -> None:
        self.cache.close()

    def __repr__(self) -> str:
        return f"<Connector {self._cfg.endpoint} auth={self._cfg.auth}>"


_connectors: dict[object, Connector] = {}
_connectors_lock = threading.Lock()


def connect(url: str | Config | None = None, **options: Any) -> Any:
    """The driver's own connection (psycopg or PyMySQL), verify-full TLS, managed credentials.

    Connections for the same configuration share one credential cache, so a token or
    secret is not fetched again for every call.

    Raises:
        ConfigError: an option is invalid.
        CredentialsError: no AWS credentials, or the secret cannot be read or parsed.
        TLSError: the server's certificate is not trusted or does not name the host.
        AuthenticationError: the database refused the credentials after one refresh.
    """
    # Keyed by the caller's own arguments: a repeated call skips parsing altogether.
    key = ("config", id(url)) if isinstance(url, Config) else repr((url, sorted(options.items())))
    connector = _connectors.get(key)
    if connector is None:
        connector = _new_connector(key, url, options)
    return connector.connect()


def _new_connector(key: object, url: str | Config | None, options: dict[str, Any]) -> Connector:
    cfg, unknown = split_options(url, options)
    if unknown:
        raise ConfigError(
            f"unknown option {', '.join(sorted(unknown))}; pass driver arguments in connect_args="
        )
    with _connectors_lock:
        # The connector keeps `url` alive, so an id() key cannot be reused by another Config.
        return _connectors.setdefault(key, Connector(cfg))


def _translate(exc: Exception, failure: Failure | None, cfg: Config) -> Exception:
    """The securedb error for a driver failure, or the driver's own error if none fits."""
    if isinstance(exc, SecureDBError):
        return exc
    if failure is Failure.AUTH:
        return AuthenticationError(
            f"{cfg.endpoint} refused the {AUTH_WORDS[cfg.auth]} even after fetching it again; "
            f"{AUTH_HINTS[cfg.auth]}",
            host=cfg.host,
            port=cfg.port,
        )
    if failure is Failure.TLS:
        return TLSError(_tls_message(str(exc), cfg), host=cfg.host, port=cfg.port)
    return exc


AUTH_WORDS = {"iam": "IAM token", "secret": "secret's password", "password": "password"}
AUTH_HINTS = {
    "iam": "check that IAM authentication is enabled on the instance, that the database user "
    "has the rds_iam role (PostgreSQL) or the AWSAuthenticationPlugin (MySQL), and that "
    "the caller's policy allows rds-db:connect for this user",
    "secret": "check that the secret's username and password match the database (a rotation "
    "may have failed)",
    "password": "check the user and password",
}


def _tls_message(reason: str, cfg: Config) -> str:
    where = f"{cfg.host}:{cfg.port}"
    if "match" in reason or "mismatch" in reason:
        if is_loopback(cfg.host):
            return (
                f"the certificate of {where} does not name {cfg.host}: the server's "
                "certificate names the real endpoint, so connect to that name and send "
                "the socket to the local forward with tunnel='127.0.0.1:PORT'"
            )
        return (
            f"the certificate of {where} does not name {cfg.host}; connect with the RDS "
            "endpoint name (a CNAME of your own is not in the certificate), or use "
            "tunnel= for a port forward"
        )
    if "verify failed" in reason or "certificate" in reason:
        return (
            f"the certificate of {where} is not trusted by {tls.ca_file(cfg)}; for RDS "
            "the bundled RDS CA should chain, otherwise pass ca_bundle= with your CA"
        )
    return (
        f"TLS to {where} failed: the server did not complete a verified TLS handshake "
        "(does it offer TLS?); securedb never connects without verified TLS"
    )
