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
from collections.abc import Mapping
from typing import Any

from securedb import tls
from securedb.config import Config, is_loopback
from securedb.credentials.base import Credential
from securedb.drivers import Failure, check_owned

__all__ = ["check_args", "classify", "connect", "connect_kwargs"]

_CREDENTIAL = "use auth='iam', secret_id=, or a password in the URL with auth='password'"
# PyMySQL arguments securedb always sets itself, whichever way the caller tries to.
ENDPOINT_KEYS = {
    "host": "put the endpoint in the URL (and a port forward in tunnel=)",
    "port": "put the port in the URL",
    "unix_socket": "put the endpoint in the URL",
    "database": "put the database name in the URL's path",
    "db": "put the database name in the URL's path",
    "user": "put the user in the URL",
    "password": _CREDENTIAL,
    "passwd": _CREDENTIAL,
    "auth_plugin_map": "securedb answers the server's authentication requests itself",
    "defer_connect": "securedb opens the socket itself (for tunnels and keepalives)",
    "read_default_file": "pass options directly; an option file could redirect the connection",
    "read_default_group": "pass options directly; an option file could redirect the connection",
    "ssl_ca": "use ca_bundle=",
    "ssl_cert": "client certificates are not supported",
    "ssl_key": "client certificates are not supported",
    "ssl_key_password": "client certificates are not supported",
}
# PyMySQL's TLS arguments, and the values that leave verify-full as it is.
TLS_KEYS: dict[str, tuple[Any, ...]] = {
    "ssl": (),
    "ssl_disabled": (False,),
    "ssl_verify_cert": (True,),
    "ssl_verify_identity": (True,),
    "check_hostname": (True,),
}

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


def check_args(args: Mapping[str, Any], host: str | None) -> None:
    """Refuse the endpoint keys, and TLS keys that would weaken verify-full off loopback."""
    check_owned(args, host, ENDPOINT_KEYS, TLS_KEYS)


def connect_kwargs(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> dict[str, Any]:
    """The one merge point of PyMySQL's arguments: securedb's own keys are applied last.

    `args` are this connection's own, on top of ``connect_args``; both are checked here.
    The endpoint, the credential and a verifying SSLContext for the real endpoint name
    always come from securedb (a loopback host may relax TLS: local development).
    """
    caller = {**cfg.connect_args, **args}
    check_args(caller, cfg.host)
    owned = {
        "host": cfg.host,
        "port": cfg.port,
        "database": cfg.dbname,
        "user": cred.user,
        "password": cred.password,
        "ssl": tls.ssl_context(cfg),
    }
    if is_loopback(cfg.host):
        owned.update((k, v) for k, v in caller.items() if k in TLS_KEYS)
    return {"connect_timeout": max(1, math.ceil(cfg.connect_timeout)), **caller, **owned}


def connect(cfg: Config, cred: Credential, args: Mapping[str, Any]) -> Any:
    """A PyMySQL connection over a socket securedb opens (DNS resolved again each time).

    The socket goes to the tunnel if there is one; TLS always verifies the endpoint name.
    """
    conn = _connection_class()(**connect_kwargs(cfg, cred, args), defer_connect=True)
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
