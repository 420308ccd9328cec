"""The asyncpg adapter: async only, with psycopg's guarantees.

asyncpg verifies the certificate against the host it connects to and has no ``hostaddr``.
For a tunnel the socket goes to the forward, and the SSLContext securedb gives it names the
real endpoint in every handshake (`_PinnedContext`), so TLS still verifies the RDS name.
asyncpg has no keepalive settings: securedb sets psycopg's dead-peer defaults on the
socket once connected, before any query.
"""

from __future__ import annotations

import functools
import socket
import ssl
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from securedb import tls
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.drivers import ArgTables, Failure, check_owned
from securedb.drivers import postgres as libpq
from securedb.errors import ConfigError
from securedb.topology import Answer

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "check_args",
    "classify",
    "connect",
    "connect_async",
    "connect_kwargs",
    "dialect_args",
    "read_topology",
    "read_topology_async",
]

_CREDENTIAL = "use auth='iam', secret_id=, or a password in the URL with auth='password'"
# Every keyword of asyncpg.connect (0.30+), in three kinds; a name in none of them is refused.
TABLES = ArgTables(
    driver="asyncpg",
    endpoint={
        "host": "put the endpoint in the URL (and a port forward in tunnel=)",
        "port": "put the port in the URL",
        "database": "put the database name in the URL's path",
        "user": "put the user in the URL",
        "password": _CREDENTIAL,
        "passfile": _CREDENTIAL,
        "dsn": "pass its parameters one by one; it can carry host and sslmode past securedb",
        "service": "pass the endpoint as a URL; a service file names the server",
        "servicefile": "pass the endpoint as a URL; a service file names the server",
        "ssl": "securedb always verifies the server; use ca_bundle= for the trust store",
        "loop": "asyncpg uses the running loop",
    },
    tls={
        "direct_tls": (False,),
        "krbsrvname": (),
        "gsslib": (),
    },
    harmless=frozenset(
        {
            *("timeout", "command_timeout", "statement_cache_size"),
            *("max_cached_statement_lifetime", "max_cacheable_statement_size"),
            *("connection_class", "record_class", "server_settings", "target_session_attrs"),
        }
    ),
)
ASYNC_IMPORTS = ("asyncpg",)
# RDS Proxy (and PgBouncer in transaction mode) cannot keep prepared statements.
PROXY_SAFE = {"statement_cache_size": 0}
# asyncpg's own words for a server that answered the TLS request with "no" or an error.
NO_TLS_MESSAGES = ("rejected SSL upgrade", "error response during SSL exchange")
LOST_MESSAGES = ("connection is closed", "connection was closed", "unexpected connection_lost")


def check_args(args: Mapping[str, Any], local: bool) -> None:
    """Refuse endpoint and unknown keys, and TLS keys that would weaken verify-full unless
    every place the socket can go is this machine."""
    check_owned(args, local, TABLES)


def connect_kwargs(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> dict[str, Any]:
    """The one merge point of asyncpg's arguments: securedb's own keys are applied last.

    The socket goes to the tunnel if there is one, while TLS verifies the endpoint name.
    TLS is always verified over TCP, loopback included (asyncpg uses none over a Unix
    socket).
    """
    caller = {**cfg.connect_args, **args}
    check_args(caller, cfg.is_local)
    libpq.check_environment()  # asyncpg reads PGSERVICE as libpq does
    host, port = tls.socket_address(cfg.tunnel) if cfg.tunnel else (cfg.host, cfg.port)
    owned = {
        "host": host,
        "port": port,
        "database": cfg.dbname,
        "user": cred.user,
        "password": cred.password,
        "ssl": _context(tls.ca_file(cfg), cfg.host or ""),
    }
    return {
        "timeout": cfg.connect_timeout,
        **caller,
        **(PROXY_SAFE if cfg.is_proxy else {}),
        **owned,
    }


def dialect_args() -> dict[str, Any]:
    """What SQLAlchemy's dialect asks of the driver when it connects itself: nothing."""
    return {}


def connect(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> Any:
    raise ConfigError(
        "asyncpg is async only: use securedb.async_connect(), async_engine() or "
        "async_pool(); for a sync connection use a postgresql:// or postgresql+psycopg:// URL"
    )


async def connect_async(
    cfg: Config, cred: Credential, args: Mapping[str, Any]
) -> asyncpg.Connection:
    import asyncpg

    conn: asyncpg.Connection = await asyncpg.connect(**connect_kwargs(cfg, cred, args))
    _keep_alive(conn)
    return conn


class _PinnedContext(ssl.SSLContext):
    """An SSLContext whose handshakes verify one name, whatever address the socket went to."""

    pinned_name: str

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        kwargs["server_hostname"] = self.pinned_name
        return super().wrap_bio(*args, **kwargs)


@functools.lru_cache(maxsize=64)
def _context(cafile: str, name: str) -> ssl.SSLContext:
    """verify-full for `name` against `cafile`, TLS 1.2 or newer; shared per pair."""
    context = _PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.pinned_name = name
    return context


def _keep_alive(conn: Any) -> None:
    """psycopg's dead-peer defaults on the connection's TCP socket (not a Unix socket)."""
    sock = conn._transport.get_extra_info("socket")  # asyncpg exposes no other way
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    for level, option, value in SOCKET_OPTIONS:
        sock.setsockopt(level, option, value)


SOCKET_OPTIONS = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, libpq.DEAD_PEER_DEFAULTS["keepalives_idle"]),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, libpq.DEAD_PEER_DEFAULTS["keepalives_interval"]),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, libpq.DEAD_PEER_DEFAULTS["keepalives_count"]),
    (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, libpq.DEAD_PEER_DEFAULTS["tcp_user_timeout"]),
)


def read_topology(conn: Any) -> Answer | None:
    raise ConfigError("asyncpg is async only")


async def read_topology_async(conn: Any) -> Answer | None:
    import asyncpg

    try:
        async with conn.transaction(readonly=True):
            rows = await conn.fetch(libpq.TOPOLOGY_SQL)
    except asyncpg.PostgresError as exc:
        if exc.sqlstate in libpq.NO_TOPOLOGY_SQLSTATES:
            return None
        raise
    return libpq.answer([tuple(row) for row in rows])


def classify(exc: BaseException) -> Failure | None:
    """asyncpg's errors, and the socket and TLS errors it lets through, by kind."""
    if sys.modules.get("asyncpg") is None:
        return None
    import asyncpg

    if exc.__class__.__module__.startswith("sqlalchemy") and exc.__cause__ is not None:
        exc = exc.__cause__  # SQLAlchemy's asyncpg dialect adapts asyncpg's errors
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = exc.sqlstate or ""
        if sqlstate in libpq.AUTH_SQLSTATES:
            return Failure.AUTH
        if sqlstate in libpq.READ_ONLY_SQLSTATES:
            return Failure.READ_ONLY
        if sqlstate in libpq.FAILOVER_SQLSTATES or sqlstate.startswith("08"):
            return Failure.FAILOVER
        return None
    if isinstance(exc, asyncpg.InterfaceError):
        return Failure.FAILOVER if any(m in str(exc) for m in LOST_MESSAGES) else None
    if isinstance(exc, ssl.SSLError):
        lost = "EOF" in str(exc) or "eof" in str(exc)
        return Failure.FAILOVER if lost else Failure.TLS
    if isinstance(exc, ConnectionError) and any(m in str(exc) for m in NO_TLS_MESSAGES):
        return Failure.TLS
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        return Failure.FAILOVER
    return None
