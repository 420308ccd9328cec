"""The psycopg 3 adapter."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from securedb import tls
from securedb.config import Config, is_loopback
from securedb.credentials.base import Credential
from securedb.drivers import Failure, check_owned

if TYPE_CHECKING:
    import psycopg

__all__ = ["check_args", "classify", "connect", "connect_async", "connect_kwargs"]

# libpq parameters securedb always sets itself, whichever way the caller tries to.
ENDPOINT_KEYS = {
    "host": "put the endpoint in the URL (and a port forward in tunnel=)",
    "hostaddr": "use tunnel= for a port forward",
    "port": "put the port in the URL",
    "dbname": "put the database name in the URL's path",
    "user": "put the user in the URL",
    "password": "use auth='iam', secret_id=, or a password in the URL with auth='password'",
    "passfile": "use auth='iam', secret_id=, or a password in the URL with auth='password'",
    "service": "pass the endpoint as a URL; a service file could redirect the connection",
    "servicefile": "pass the endpoint as a URL; a service file could redirect the connection",
    "sslrootcert": "use ca_bundle=",
    "sslcert": "client certificates are not supported",
    "sslkey": "client certificates are not supported",
    "sslpassword": "client certificates are not supported",
}
# libpq's TLS parameters, and the values that leave verify-full as it is.
TLS_KEYS: dict[str, tuple[Any, ...]] = {
    "sslmode": ("verify-full",),
    "ssl_min_protocol_version": ("TLSv1.2",),
    "ssl_max_protocol_version": (),
    "sslnegotiation": (),
    "sslsni": (1, "1"),
    "sslcrl": (),
    "sslcrldir": (),
    "sslcompression": (),
    "sslcertmode": (),
    "requiressl": (),
    "gssencmode": ("disable",),
    "krbsrvname": (),
    "gsslib": (),
}

ASYNC_IMPORTS = ("psycopg",)
AUTH_SQLSTATES = {"28P01", "28000"}
FAILOVER_SQLSTATES = {"57P01", "57P02", "57P03"}
READ_ONLY_SQLSTATES = {"25006"}
# Errors raised while connecting carry no SQLSTATE: libpq's messages tell.
AUTH_MESSAGES = (
    "password authentication failed",
    "PAM authentication failed",
    "authentication failed for user",
)
# Only certificate and handshake failures: "SSL error: unexpected eof" is a lost connection.
TLS_MESSAGES = (
    "certificate verify failed",
    "does not match host name",
    "server does not support SSL",
    "root certificate file",
    "SSL error: tlsv1 alert",
    "SSL error: sslv3 alert",
    "SSL error: wrong version number",
    "SSL error: unsupported protocol",
)
FAILOVER_MESSAGES = (
    "unexpected eof",
    "Connection timed out",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "Connection refused",
    "server closed the connection",
    "timeout expired",
    "could not connect",
    "connection is lost",
    "consuming input failed",
    "terminating connection",
    "the connection is closed",
    "Connection reset",
    "no route to host",
    "could not translate host name",
)


# A silent peer (a partition, a writer that vanished) is noticed in under 10 s: keepalive
# probes after 5 s idle, and unacknowledged data or probes abort the socket after 9 s.
DEAD_PEER_DEFAULTS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 9000,
}
# RDS Proxy (and PgBouncer in transaction mode) cannot keep server-side prepared
# statements or session settings sent at startup.
PROXY_SAFE = {"prepare_threshold": None}


def check_args(args: Mapping[str, Any], host: str | None) -> None:
    """Refuse the endpoint keys, and TLS keys that would weaken verify-full off loopback."""
    check_owned(args, host, ENDPOINT_KEYS, TLS_KEYS)


def connect_kwargs(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> dict[str, Any]:
    """The one merge point of psycopg's arguments: securedb's own keys are applied last.

    `args` are this connection's own (pool kwargs, Django's options), on top of
    ``connect_args``; both are checked here. Dead-peer detection defaults can be
    overridden; RDS Proxy endpoints get `PROXY_SAFE` settings; the endpoint, the
    credential and verify-full TLS always come from securedb (a loopback host may relax
    TLS: the local-development exemption).
    """
    caller = {**cfg.connect_args, **args}
    check_args(caller, cfg.host)
    owned = {
        "host": cfg.host,
        "port": cfg.port,
        "dbname": cfg.dbname,
        "user": cred.user,
        "password": cred.password,
        **tls.libpq_params(cfg),
    }
    if is_loopback(cfg.host):
        owned.update((k, v) for k, v in caller.items() if k in TLS_KEYS)
    return {
        "connect_timeout": max(1, math.ceil(cfg.connect_timeout)),
        **DEAD_PEER_DEFAULTS,
        **caller,
        **(PROXY_SAFE if cfg.is_proxy else {}),
        **owned,
    }


def connect(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> psycopg.Connection[Any]:
    import psycopg

    return psycopg.Connection.connect(**connect_kwargs(cfg, cred, args))


async def connect_async(
    cfg: Config, cred: Credential, args: Mapping[str, Any]
) -> psycopg.AsyncConnection[Any]:
    import psycopg

    return await psycopg.AsyncConnection.connect(**connect_kwargs(cfg, cred, args))


def classify(exc: BaseException) -> Failure | None:
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return None
    sqlstate = exc.sqlstate or ""
    message = str(exc)
    if sqlstate in AUTH_SQLSTATES or any(m in message for m in AUTH_MESSAGES):
        return Failure.AUTH
    if sqlstate in READ_ONLY_SQLSTATES:
        return Failure.READ_ONLY
    if sqlstate in FAILOVER_SQLSTATES or sqlstate.startswith("08"):
        return Failure.FAILOVER
    if not sqlstate and isinstance(exc, psycopg.OperationalError):
        if any(m in message for m in TLS_MESSAGES):
            return Failure.TLS
        if any(m in message for m in FAILOVER_MESSAGES):
            return Failure.FAILOVER
    return None
