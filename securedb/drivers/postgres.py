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
TLS_MESSAGES = (
    "certificate verify failed",
    "does not match host name",
    "SSL",
    "server does not support",
    "root certificate file",
    "certificate",
)
FAILOVER_MESSAGES = (
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


def connect_kwargs(cfg: Config, cred: Credential) -> dict[str, Any]:
    """libpq parameters: verify-full TLS to the real endpoint, the credential, timeouts."""
    return {
        "host": cfg.host,
        "port": cfg.port,
        "dbname": cfg.dbname,
        "user": cred.user,
        "password": cred.password,
        "connect_timeout": max(1, math.ceil(cfg.connect_timeout)),
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
