"""The PyMySQL adapter, and aiomysql (built on PyMySQL) for async.

PyMySQL verifies the certificate against the host it was given, so for a tunnel the
connection is built for the real endpoint name and handed a socket opened to the
tunnel. It would answer a cleartext-password request on any transport; securedb's
connection class refuses unless TLS is on.
"""

from __future__ import annotations

import asyncio
import functools
import math
import socket
import ssl
import sys
from collections.abc import Mapping
from typing import Any

from securedb import tls
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.drivers import ArgTables, Failure, check_owned
from securedb.topology import Answer, Row

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
_OPTION_FILE = "pass options directly; an option file could redirect the connection"
# Every keyword of PyMySQL 1.1, in three kinds; a name in none of them is refused.
TABLES = ArgTables(
    driver="PyMySQL",
    # securedb's, whichever way the caller tries to set them.
    endpoint={
        "host": "put the endpoint in the URL (and a port forward in tunnel=)",
        "port": "put the port in the URL",
        "unix_socket": "put the endpoint in the URL",
        "named_pipe": "put the endpoint in the URL",
        "database": "put the database name in the URL's path",
        "db": "put the database name in the URL's path",
        "user": "put the user in the URL",
        "password": _CREDENTIAL,
        "passwd": _CREDENTIAL,
        "auth_plugin_map": "securedb answers the server's authentication requests itself",
        "auth_plugin": "securedb answers the server's authentication requests itself",
        "defer_connect": "securedb opens the socket itself (for tunnels and keepalives)",
        "read_default_file": _OPTION_FILE,
        "read_default_group": _OPTION_FILE,
        "ssl_ca": "use ca_bundle=",
        "ssl_cert": "client certificates are not supported",
        "ssl_key": "client certificates are not supported",
        "ssl_key_password": "client certificates are not supported",
    },
    # Any of these, whatever its value, makes PyMySQL build its own SSLContext (the system
    # store, no host name check) in place of securedb's: none is harmless off this machine.
    tls={"ssl": (), "ssl_disabled": (), "ssl_verify_cert": (), "ssl_verify_identity": ()},
    harmless=frozenset(
        {
            *("charset", "collation", "sql_mode", "conv", "use_unicode", "client_flag"),
            *("cursorclass", "init_command", "connect_timeout", "autocommit", "local_infile"),
            *("max_allowed_packet", "read_timeout", "write_timeout", "bind_address"),
            *("binary_prefix", "program_name", "server_public_key"),
        }
    ),
)

ASYNC_IMPORTS = ("pymysql", "aiomysql")
ACCESS_DENIED = 1045
CR_CONN_HOST_ERROR = 2003  # also how PyMySQL reports a certificate failure
CR_SSL_CONNECTION_ERROR = 2026
# 1053: server shutdown in progress; 1927: connection killed (MariaDB).
FAILOVER_ERRNOS = {1053, 1927, 2002, 2003, 2006, 2013, 2055}
READ_ONLY_ERRNOS = {1290, 1836}
CLEARTEXT_PLUGINS = (b"mysql_clear_password", b"dialog")


# A silent peer is noticed by the socket itself, not by read or write timeouts (those
# would cut long queries short, and PyMySQL re-arms them with two syscalls per query):
# keepalive probes after 5 s idle; unacknowledged data or probes abort after 9 s.
SOCKET_OPTIONS = [
    (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", 4), 5),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", 5), 2),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", 6), 2),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", 18), 9000),
]


def check_args(args: Mapping[str, Any], local: bool) -> None:
    """Refuse endpoint and unknown keys, and any TLS key unless every place the socket can
    go is this machine."""
    check_owned(args, local, TABLES)


def connect_kwargs(
    cfg: Config, cred: Credential, args: Mapping[str, Any], aio: bool = False
) -> dict[str, Any]:
    """The one merge point of PyMySQL's arguments (aiomysql's with `aio`): securedb's own
    keys are applied last.

    `args` are this connection's own, on top of ``connect_args``; both are checked here.
    The endpoint, the credential and a verifying SSLContext for the real endpoint name
    always come from securedb (when every place the socket can go is this machine, TLS
    may be relaxed: local development).
    """
    caller = {**cfg.connect_args, **args}
    check_args(caller, cfg.is_local)
    owned = {
        "host": cfg.host,
        "port": cfg.port,
        "database": cfg.dbname,
        "user": cred.user,
        "password": cred.password,
        "ssl": tls.ssl_context(cfg),
    }
    if cfg.is_local:
        owned.update((k, v) for k, v in caller.items() if k in TABLES.tls)
    kwargs = {"connect_timeout": max(1, math.ceil(cfg.connect_timeout)), **caller, **owned}
    if not aio:
        return {**kwargs, "defer_connect": True}  # `connect` opens the socket itself
    # aiomysql's spelling of the same: `db`, `ssl=None` for no TLS, no verify flags (its
    # SSLContext decides), and `address` for where the socket goes (the tunnel).
    kwargs["db"] = kwargs.pop("database")
    if kwargs.pop("ssl_disabled", False):  # loopback only: PyMySQL's spelling of "no TLS"
        kwargs["ssl"] = None
    for pymysql_only in ("ssl_verify_cert", "ssl_verify_identity"):
        kwargs.pop(pymysql_only, None)
    kwargs["address"] = tls.socket_address(cfg.tunnel) if cfg.tunnel else None
    return kwargs


def dialect_args() -> dict[str, Any]:
    """What SQLAlchemy's MySQL dialect asks of PyMySQL when it connects itself: rowcount
    as rows matched, which its ORM relies on. An engine passes it through the merge point."""
    from pymysql.constants import CLIENT

    return {"client_flag": CLIENT.FOUND_ROWS}


def connect(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> Any:
    """A PyMySQL connection over a socket securedb opens (DNS resolved again each time).

    The socket goes to the tunnel if there is one; TLS always verifies the endpoint name.
    """
    conn = _connection_class()(**connect_kwargs(cfg, cred, args))
    address = tls.socket_address(cfg.tunnel) if cfg.tunnel else (cfg.host, cfg.port or 3306)
    try:
        sock = socket.create_connection(address, cfg.connect_timeout)
    except OSError as exc:
        from pymysql.err import OperationalError

        raise OperationalError(
            CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on {address[0]!r} ({exc})"
        ) from exc
    for level, option, value in SOCKET_OPTIONS:
        sock.setsockopt(level, option, value)
    conn.connect(sock)
    return conn


@functools.cache
def _connection_class() -> type:
    from pymysql.connections import Connection as PyMySQLConnection
    from pymysql.err import OperationalError

    class Connection(PyMySQLConnection):
        """PyMySQL's connection, refusing to send a cleartext password without TLS."""

        def _process_auth(self, plugin_name: bytes, auth_packet: Any, handler: Any = None) -> Any:
            if plugin_name in CLEARTEXT_PLUGINS and not getattr(self, "_secure", False):
                raise OperationalError(
                    CR_SSL_CONNECTION_ERROR,
                    "the server asked for a cleartext password without TLS; refused",
                )
            return super()._process_auth(plugin_name, auth_packet, handler)  # type: ignore[misc]

    Connection.__module__ = "pymysql.connections"
    return Connection


async def connect_async(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> Any:
    """An aiomysql connection (PyMySQL underneath) with `connect`'s guarantees.

    TLS is required before any credential is sent, cleartext passwords only over TLS,
    the same socket options, and for a tunnel the socket goes to the forward while TLS
    verifies the endpoint name.
    """
    conn = _async_connection_class()(**connect_kwargs(cfg, cred, args, aio=True))
    try:
        await conn._connect()
    except BaseException:
        await asyncio.sleep(0)  # aiomysql closed its transport: let that finish first
        raise
    return conn


@functools.cache
def _async_connection_class() -> type:
    import aiomysql  # type: ignore[import-untyped]
    from pymysql.constants import CLIENT
    from pymysql.err import OperationalError

    class AsyncConnection(aiomysql.Connection):  # type: ignore[misc]
        """aiomysql's connection, refusing to authenticate without the TLS it was given.

        aiomysql goes on in plaintext when the server does not offer TLS, and answers a
        cleartext-password request on any transport; this class does neither.
        """

        _host: str
        _port: int

        def __init__(self, *, address: tuple[str, int] | None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._securedb_endpoint = (self._host, self._port)
            if address is not None:  # the socket goes to the tunnel ...
                self._host, self._port = address

        async def _get_server_information(self) -> None:
            self._host, self._port = self._securedb_endpoint  # ... TLS names the endpoint
            await super()._get_server_information()

        def _set_keep_alive(self) -> None:
            sock = self._writer.transport.get_extra_info("socket")
            for level, option, value in SOCKET_OPTIONS:
                sock.setsockopt(level, option, value)

        async def _request_authentication(self) -> None:
            if self._ssl_context and not self.server_capabilities & CLIENT.SSL:
                raise OperationalError(
                    CR_SSL_CONNECTION_ERROR, "the server does not offer TLS; refused"
                )
            await super()._request_authentication()

        async def ensure_closed(self) -> None:
            """aiomysql's, then wait (a second at most) until the socket is really closed.

            aiomysql only starts closing the TLS transport; a loop that ends first would
            leave the socket open.
            """
            writer = self._writer
            await super().ensure_closed()
            if writer is not None:
                try:
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
                except (OSError, asyncio.TimeoutError):
                    writer.transport.abort()

        async def _process_auth(self, plugin_name: bytes, auth_packet: Any) -> Any:
            if plugin_name in CLEARTEXT_PLUGINS and not self._secure:
                raise OperationalError(
                    CR_SSL_CONNECTION_ERROR,
                    "the server asked for a cleartext password without TLS; refused",
                )
            return await super()._process_auth(plugin_name, auth_packet)

    AsyncConnection.__module__ = "aiomysql.connection"
    return AsyncConnection


# Aurora MySQL's view of the cluster, the answering instance, and whether it takes writes.
TOPOLOGY_SQL = (
    "SELECT SERVER_ID, SESSION_ID = 'MASTER_SESSION_ID', REPLICA_LAG_IN_MILLISECONDS, "
    "LAST_UPDATE_TIMESTAMP, @@aurora_server_id, @@innodb_read_only = 0 "
    "FROM information_schema.replica_host_status"
)


# Unknown table, unknown system variable: not Aurora (an RDS Multi-AZ DB cluster, say).
NO_TOPOLOGY_ERRORS = {1109, 1193}


def read_topology(conn: Any) -> Answer | None:
    """The cluster's topology as `conn`'s instance reports it, None if the server has none;
    the connection is left idle."""
    try:
        with conn.cursor() as cursor:
            cursor.execute(TOPOLOGY_SQL)
            rows = cursor.fetchall()
    except Exception as exc:
        if _error_code(exc) in NO_TOPOLOGY_ERRORS:
            return None
        raise
    finally:
        conn.rollback()
    return _answer(rows)


async def read_topology_async(conn: Any) -> Answer | None:
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(TOPOLOGY_SQL)
            rows = await cursor.fetchall()
    except Exception as exc:
        if _error_code(exc) in NO_TOPOLOGY_ERRORS:
            return None
        raise
    finally:
        await conn.rollback()
    return _answer(rows)


def _error_code(exc: BaseException) -> Any:
    return exc.args[0] if exc.args else None


def _answer(rows: Any) -> Answer:
    """MySQL spells a comparison's truth 1 or 0."""
    rows = list(rows)
    here, writable = (rows[0][4], rows[0][5] == 1) if rows else (None, None)
    return Answer([Row(r[0], r[1] == 1, r[2], r[3]) for r in rows], here, writable)


def classify(exc: BaseException) -> Failure | None:
    # By module name, not as `pymysql.err`: importing Django's MySQL backend after
    # `install_as_MySQLdb()` makes a second copy of that module and rebinds the attribute.
    if sys.modules.get("pymysql.err") is None:  # not imported: `exc` is none of its errors
        return None
    from pymysql.err import InterfaceError, MySQLError

    if isinstance(exc, InterfaceError) and exc.args[:1] in ((0,), ()):
        return Failure.FAILOVER
    if not isinstance(exc, MySQLError) or not exc.args:
        return None
    errno = exc.args[0]
    if errno == ACCESS_DENIED:
        return Failure.AUTH
    # PyMySQL keeps the ssl error as `original_exception`, aiomysql as the cause.
    cause = getattr(exc, "original_exception", None) or exc.__cause__
    if errno == CR_SSL_CONNECTION_ERROR or isinstance(cause, ssl.SSLError):
        return Failure.TLS
    if errno in READ_ONLY_ERRNOS:
        return Failure.READ_ONLY
    if errno in FAILOVER_ERRNOS:
        return Failure.FAILOVER
    return None
