"""The psycopg 3 adapter."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from securedb import tls
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.drivers import Failure

if TYPE_CHECKING:
    import psycopg

__all__ = ["classify", "connect", "connect_kwargs"]

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


def connect_kwargs(cfg: Config, cred: Credential) -> dict[str, Any]:
    """libpq parameters: verify-full TLS to the real endpoint, the credential, timeouts.

    Dead-peer detection defaults (`DEAD_PEER_DEFAULTS`) can be overridden in
    ``connect_args``; RDS Proxy endpoints get `PROXY_SAFE` settings.
    """
    return {
        "host": cfg.host,
        "port": cfg.port,
        "dbname": cfg.dbname,
        "user": cred.user,
        "password": cred.password,
        "connect_timeout": max(1, math.ceil(cfg.connect_timeout)),
        **DEAD_PEER_DEFAULTS,
        **(PROXY_SAFE if cfg.is_proxy else {}),
        **tls.libpq_params(cfg),
        **cfg.connect_args,
    }


def connect(cfg: Config, cred: Credential, **extra: Any) -> psycopg.Connection[Any]:
    import psycopg

    return psycopg.Connection.connect(**{**connect_kwargs(cfg, cred), **extra})


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
