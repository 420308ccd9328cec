"""The psycopg 3 adapter."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from securedb import tls
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.drivers import ArgTables, Failure, check_owned
from securedb.errors import ConfigError
from securedb.topology import Answer, Row

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "check_args",
    "check_environment",
    "classify",
    "connect",
    "connect_async",
    "connect_kwargs",
    "dialect_args",
    "read_topology",
    "read_topology_async",
]

_CREDENTIAL = "use auth='iam', secret_id=, or a password in the URL with auth='password'"
_CARRIER = "it can carry other parameters (host, hostaddr, sslmode) past securedb's checks"
# Every parameter of libpq 18 and psycopg's own keywords, in three kinds. A name in none of
# them is refused: a parameter is judged by what libpq does with it, not by its value.
TABLES = ArgTables(
    driver="psycopg/libpq",
    # securedb's, whichever way the caller tries to set them.
    endpoint={
        "host": "put the endpoint in the URL (and a port forward in tunnel=)",
        "hostaddr": "use tunnel= for a port forward",
        "port": "put the port in the URL",
        "dbname": "put the database name in the URL's path",
        "user": "put the user in the URL",
        "password": _CREDENTIAL,
        "passfile": _CREDENTIAL,
        "conninfo": f"pass its parameters one by one; {_CARRIER}",
        "dsn": f"pass its parameters one by one; {_CARRIER}",
        "service": f"pass the endpoint as a URL; a service file names the server, and {_CARRIER}",
        "servicefile": "pass the endpoint as a URL; a service file names the server",
        "sslrootcert": "use ca_bundle=",
        "sslcert": "client certificates are not supported",
        "sslkey": "client certificates are not supported",
        "sslpassword": "client certificates are not supported",
        "scram_client_key": _CREDENTIAL,
        "scram_server_key": _CREDENTIAL,
        "oauth_issuer": "OAuth sends a credential to another server; it is not supported",
        "oauth_client_id": "OAuth sends a credential to another server; it is not supported",
        "oauth_client_secret": "OAuth sends a credential to another server; it is not supported",
        "oauth_scope": "OAuth sends a credential to another server; it is not supported",
    },
    # TLS and GSS parameters, and the values that leave verify-full as it is.
    tls={
        "sslmode": ("verify-full",),
        "ssl_min_protocol_version": ("TLSv1.2", "TLSv1.3"),
        "ssl_max_protocol_version": (),
        "sslnegotiation": ("postgres",),
        "sslsni": (1, "1"),
        "sslcrl": (),
        "sslcrldir": (),
        "sslcompression": (),
        "sslcertmode": (),
        "sslkeylogfile": (),  # writes the session keys: anyone with the file reads the traffic
        "gssencmode": ("disable",),
        "gssdelegation": (0, "0"),
        "krbsrvname": (),
        "gsslib": (),
    },
    harmless=frozenset(
        {
            *("application_name", "fallback_application_name", "client_encoding", "options"),
            *("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval"),
            *("keepalives_count", "tcp_user_timeout", "target_session_attrs"),
            *("load_balance_hosts", "channel_binding", "require_auth", "requirepeer"),
            *("min_protocol_version", "max_protocol_version", "replication"),
            # psycopg's own keywords
            *("autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory"),
        }
    ),
)
# libpq reads these from the environment when a parameter is not given. securedb gives
# every destination and TLS parameter explicitly (an empty hostaddr cancels PGHOSTADDR),
# except the service, which cannot be cancelled: a set PGSERVICE is refused.
REFUSED_ENVIRONMENT = ("PGSERVICE",)

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


def check_args(args: Mapping[str, Any], local: bool) -> None:
    """Refuse endpoint and unknown keys, and TLS keys that would weaken verify-full unless
    every place the socket can go is this machine."""
    check_owned(args, local, TABLES)


def check_environment() -> None:
    """Refuse what libpq would read from the environment and securedb cannot override."""
    for name in REFUSED_ENVIRONMENT:
        if name in os.environ:
            raise ConfigError(
                f"{name} is set in the environment: libpq would take the server from a "
                f"service file instead of the URL; unset {name} for this process"
            )


def connect_kwargs(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> dict[str, Any]:
    """The one merge point of psycopg's arguments: securedb's own keys are applied last.

    `args` are this connection's own (pool kwargs, Django's options), on top of
    ``connect_args``; both are checked here. Dead-peer detection defaults can be
    overridden; RDS Proxy endpoints get `PROXY_SAFE` settings; the endpoint, the
    credential and verify-full TLS always come from securedb (when every place the socket
    can go is this machine, TLS may be relaxed: the local-development exemption).
    """
    caller = {**cfg.connect_args, **args}
    check_args(caller, cfg.is_local)
    check_environment()
    owned = {
        "host": cfg.host,
        "hostaddr": "",  # else libpq takes PGHOSTADDR from the environment
        "port": cfg.port,
        "dbname": cfg.dbname,
        "user": cred.user,
        "password": cred.password,
        **tls.libpq_params(cfg),
    }
    # Checked above: off this machine, only values that keep verify-full (or tighten it,
    # as TLSv1.3 does) are left to win.
    owned.update((k, v) for k, v in caller.items() if k in TABLES.tls)
    return {
        "connect_timeout": max(1, math.ceil(cfg.connect_timeout)),
        **DEAD_PEER_DEFAULTS,
        **caller,
        **(PROXY_SAFE if cfg.is_proxy else {}),
        **owned,
    }


def dialect_args() -> dict[str, Any]:
    """What SQLAlchemy's dialect asks of the driver when it connects itself: nothing."""
    return {}


def connect(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> psycopg.Connection[Any]:
    import psycopg

    return psycopg.Connection.connect(**connect_kwargs(cfg, cred, args))


async def connect_async(
    cfg: Config, cred: Credential, args: Mapping[str, Any]
) -> psycopg.AsyncConnection[Any]:
    import psycopg

    return await psycopg.AsyncConnection.connect(**connect_kwargs(cfg, cred, args))


# Aurora PostgreSQL's view of the cluster, the answering instance, and whether it takes
# writes, in one round trip; schema-qualified so no search_path can stand in for them.
TOPOLOGY_SQL = (
    "SELECT s.server_id, s.session_id OPERATOR(pg_catalog.=) 'MASTER_SESSION_ID', "
    "s.replica_lag_in_msec, s.last_update_timestamp, "
    "pg_catalog.aurora_db_instance_identifier(), NOT pg_catalog.pg_is_in_recovery() "
    "FROM pg_catalog.aurora_replica_status() AS s"
)


# The server has no such function: not Aurora (an RDS Multi-AZ DB cluster, say).
NO_TOPOLOGY_SQLSTATES = {"42883", "42P01"}


def read_topology(conn: psycopg.Connection[Any]) -> Answer | None:
    """The cluster's topology as `conn`'s instance reports it, None if the server has none;
    the connection is left idle."""
    try:
        rows = conn.execute(TOPOLOGY_SQL).fetchall()
    except Exception as exc:
        if getattr(exc, "sqlstate", None) in NO_TOPOLOGY_SQLSTATES:
            return None
        raise
    finally:
        conn.rollback()
    return answer(rows)


async def read_topology_async(conn: psycopg.AsyncConnection[Any]) -> Answer | None:
    try:
        rows = await (await conn.execute(TOPOLOGY_SQL)).fetchall()
    except Exception as exc:
        if getattr(exc, "sqlstate", None) in NO_TOPOLOGY_SQLSTATES:
            return None
        raise
    finally:
        await conn.rollback()
    return answer(rows)


def answer(rows: list[Any]) -> Answer:
    """An `Answer` from `TOPOLOGY_SQL`'s rows (asyncpg's adapter shares it)."""
    here, writable = (rows[0][4], rows[0][5]) if rows else (None, None)
    return Answer([Row(*row[:4]) for row in rows], here, writable)


def classify(exc: BaseException) -> Failure | None:
    if sys.modules.get("psycopg") is None:  # not imported: `exc` cannot be one of its errors
        return None
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
