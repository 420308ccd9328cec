"""The PyMySQL adapter.

PyMySQL verifies the certificate against the host it was given, so for a tunnel the
connection is built for the real endpoint name and handed a socket opened to the
tunnel. It would answer a cleartext-password request on any transport; securedb's
connection class refuses unless TLS is on.
"""

from __future__ import annotations

import functools
import math
import socket
import ssl
from typing import Any

from securedb import tls
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.drivers import Failure

__all__ = ["classify", "connect", "connect_kwargs"]

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


def connect_kwargs(cfg: Config, cred: Credential) -> dict[str, Any]:
    """PyMySQL arguments: a verifying SSLContext for the real endpoint, the credential."""
    return {
        "host": cfg.host,
        "port": cfg.port,
        "database": cfg.dbname,
        "user": cred.user,
        "password": cred.password,
        "ssl": tls.ssl_context(cfg),
        "connect_timeout": max(1, math.ceil(cfg.connect_timeout)),
        **cfg.connect_args,
    }


def connect(cfg: Config, cred: Credential, **extra: Any) -> Any:
    """A PyMySQL connection over a socket securedb opens (DNS resolved again each time).

    The socket goes to the tunnel if there is one; TLS always verifies the endpoint name.
    """
    conn = _connection_class()(**{**connect_kwargs(cfg, cred), **extra}, defer_connect=True)
    address = tls.socket_address(cfg.tunnel) if cfg.tunnel else (cfg.host, cfg.port or 3306)
    try:
        sock = socket.create_connection(address, cfg.connect_timeout)
    except OSError as exc:
        import pymysql

        raise pymysql.err.OperationalError(
            CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on {address[0]!r} ({exc})"
        ) from exc
    for level, option, value in SOCKET_OPTIONS:
        sock.setsockopt(level, option, value)
    conn.connect(sock)
    return conn


@functools.cache
def _connection_class() -> type:
    import pymysql

    class Connection(pymysql.connections.Connection):
        """PyMySQL's connection, refusing to send a cleartext password without TLS."""

        def _process_auth(self, plugin_name: bytes, auth_packet: Any, handler: Any = None) -> Any:
            if plugin_name in CLEARTEXT_PLUGINS and not getattr(self, "_secure", False):
                raise pymysql.err.OperationalError(
                    CR_SSL_CONNECTION_ERROR,
                    "the server asked for a cleartext password without TLS; refused",
                )
            return super()._process_auth(plugin_name, auth_packet, handler)  # type: ignore[misc]

    Connection.__module__ = "pymysql.connections"
    return Connection


def classify(exc: BaseException) -> Failure | None:
    import pymysql

    if isinstance(exc, pymysql.err.InterfaceError) and exc.args[:1] in ((0,), ()):
        return Failure.FAILOVER
    if not isinstance(exc, pymysql.err.MySQLError) or not exc.args:
        return None
    errno = exc.args[0]
    if errno == ACCESS_DENIED:
        return Failure.AUTH
    if errno == CR_SSL_CONNECTION_ERROR or isinstance(
        getattr(exc, "original_exception", None), ssl.SSLError
    ):
        return Failure.TLS
    if errno in READ_ONLY_ERRNOS:
        return Failure.READ_ONLY
    if errno in FAILOVER_ERRNOS:
        return Failure.FAILOVER
    return None
