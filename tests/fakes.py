"""Tiny fake database servers that misbehave on purpose and record what clients send.

They speak just enough of each protocol to reach the point where a careless client
would send a credential: a PostgreSQL server that declines TLS or presents a
certificate for other names, and a MySQL server that offers no TLS and asks for a
cleartext password. The TLS relays present a certificate chain of the test's choosing
to the client and pass everything on, over TLS again, to one of the bed's servers.

The catchers go all the way to the credential: a PostgreSQL server that takes a
plaintext startup and asks for the password in clear, and a MySQL server that asks for
``sha256_password`` and reads the password (over TLS, as it is; without TLS, encrypted
to a key of its own, which it decrypts). They listen on any loopback address, so that
a second destination (``127.0.0.2``) can stand for another machine; `resolving` makes a
name resolve to it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

Handler = Callable[[socket.socket, "FakeServer"], None]


class FakeServer:
    """Serves `handler` to each client in turn on `host`:`port` (a free port by default).

    `received` is every byte clients sent (after TLS, for a handler that terminates it);
    `revealed` is what the handler could read from it (a password it decrypted);
    `accepted` counts connections.
    """

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self.received = bytearray()
        self.revealed = bytearray()
        self.accepted = 0
        self._listener = socket.create_server((host, port))
        self.host = host
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def heard(self) -> bytes:
        """Everything a client let this server read: what it sent, and what that revealed."""
        return bytes(self.received) + bytes(self.revealed)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError, ssl.SSLError):
                    self.handler(conn, self)

    def recv(self, sock: socket.socket | ssl.SSLSocket, n: int) -> bytes:
        data = sock.recv(n)
        self.received += data
        return data

    def drain(self, sock: socket.socket | ssl.SSLSocket) -> None:
        """Record whatever else the client sends until it hangs up."""
        while self.recv(sock, 4096):
            pass

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
        self._listener.close()
        self._thread.join(5)


def pg_without_tls(sock: socket.socket, server: FakeServer) -> None:
    server.recv(sock, 8)  # SSLRequest
    sock.sendall(b"N")
    server.drain(sock)


def pg_with_cert(cert: str, key: str) -> Handler:
    """A PostgreSQL server that accepts SSLRequest and presents `cert`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def handler(sock: socket.socket, server: FakeServer) -> None:
        server.recv(sock, 8)
        sock.sendall(b"S")
        with context.wrap_socket(sock, server_side=True) as tls:
            server.drain(tls)

    return handler


MYSQL_PROTOCOL_41, MYSQL_SSL, MYSQL_SECURE, MYSQL_PLUGIN_AUTH = 0x200, 0x800, 0x8000, 0x80000


def mysql_greeting(plugin: bytes, caps: int) -> bytes:
    """A MySQL server's first packet (protocol 10) offering `caps` and auth `plugin`."""
    body = (
        b"\x0a"
        + b"10.11.0-fake\x00"
        + struct.pack("<I", 7)
        + b"12345678\x00"
        + struct.pack("<H", caps & 0xFFFF)
        + b"\x21"
        + struct.pack("<H", 2)
        + struct.pack("<H", caps >> 16)
        + bytes([21])
        + b"\x00" * 10
        + b"123456789012\x00"
        + plugin
        + b"\x00"
    )
    return mysql_packet(body, 0)


def mysql_packet(body: bytes, sequence: int) -> bytes:
    return struct.pack("<I", len(body))[:3] + bytes([sequence]) + body


def mysql_read_packet(sock: socket.socket | ssl.SSLSocket, server: FakeServer) -> bytes:
    header = _read_exactly(sock, server, 4)
    return _read_exactly(sock, server, int.from_bytes(header[:3], "little"))


def _read_exactly(sock: socket.socket | ssl.SSLSocket, server: FakeServer, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = server.recv(sock, n - len(data))
        if not chunk:
            raise OSError("the client hung up")
        data += chunk
    return data


def mysql_without_tls(sock: socket.socket, server: FakeServer) -> None:
    """A MySQL handshake that lacks CLIENT_SSL and asks for mysql_clear_password."""
    caps = MYSQL_PROTOCOL_41 | MYSQL_SECURE | MYSQL_PLUGIN_AUTH
    sock.sendall(mysql_greeting(b"mysql_clear_password", caps))
    server.drain(sock)


# What a server sends, after the client's handshake response, to switch to a plugin
# that makes the client send its password as it is.
CLEARTEXT_SWITCHES = {
    "mysql_clear_password": b"\xfemysql_clear_password\x00",
    "dialog": b"\xfedialog\x00\x05Password: ",  # a password question, the last one
}


ACCESS_DENIED = b"\xff" + struct.pack("<H", 1045) + b"#28000Access denied"


def mysql_cleartext_switch(plugin: str) -> Handler:
    """A MySQL server without TLS that lets the client log in, then asks for the password
    in clear through `plugin` (an auth switch), records the answer and refuses it."""

    def handler(sock: socket.socket, server: FakeServer) -> None:
        caps = MYSQL_PROTOCOL_41 | MYSQL_SECURE | MYSQL_PLUGIN_AUTH
        sock.sendall(mysql_greeting(b"mysql_native_password", caps))
        mysql_read_packet(sock, server)  # the handshake response: user, scrambled password
        sock.sendall(mysql_packet(CLEARTEXT_SWITCHES[plugin], 2))
        mysql_read_packet(sock, server)  # a careless client's password, in clear
        sock.sendall(mysql_packet(ACCESS_DENIED, 4))
        server.drain(sock)

    return handler


PG_SSL_REQUEST = bytes.fromhex("0000000804d2162f")


def pg_tls_relay(chain: str, key: str, upstream: tuple[str, int], upstream_ca: str) -> Handler:
    """A PostgreSQL front that presents `chain` and relays to the server at `upstream`."""
    front, back = _contexts(chain, key, upstream_ca)

    def handler(sock: socket.socket, server: FakeServer) -> None:
        server.recv(sock, 8)  # SSLRequest
        sock.sendall(b"S")
        with front.wrap_socket(sock, server_side=True) as client:
            up = socket.create_connection(upstream, timeout=5)
            up.sendall(PG_SSL_REQUEST)
            if up.recv(1) != b"S":
                raise OSError("the upstream server declined TLS")
            with back.wrap_socket(up, server_hostname="localhost") as upstream_tls:
                _relay(client, upstream_tls)

    return handler


def mysql_tls_relay(chain: str, key: str, upstream: tuple[str, int], upstream_ca: str) -> Handler:
    """A MySQL front that presents `chain` and relays to the server at `upstream`.

    The server's greeting and the client's TLS request pass as they are, so the login
    that follows over TLS is the client's own, for the server's own salt.
    """
    front, back = _contexts(chain, key, upstream_ca)

    def handler(sock: socket.socket, server: FakeServer) -> None:
        with socket.create_connection(upstream, timeout=5) as up:
            sock.sendall(_raw_packet(up, server))  # the greeting, offering TLS
            up.sendall(_raw_packet(sock, server))  # the client's TLS request
            with (
                front.wrap_socket(sock, server_side=True) as client,
                back.wrap_socket(up, server_hostname="localhost") as upstream_tls,
            ):
                _relay(client, upstream_tls)

    return handler


def _contexts(chain: str, key: str, upstream_ca: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    front.load_cert_chain(chain, key)
    return front, ssl.create_default_context(cafile=upstream_ca)


def _raw_packet(sock: socket.socket, server: FakeServer) -> bytes:
    header = _read_exactly(sock, server, 4)
    return header + _read_exactly(sock, server, int.from_bytes(header[:3], "little"))


def _relay(a: ssl.SSLSocket, b: ssl.SSLSocket) -> None:
    """Pass data both ways until one side ends; TLS may hold data the socket does not."""
    peer = {a: b, b: a}
    with selectors.DefaultSelector() as sel:
        for sock in peer:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        while True:
            ready = [s for s in peer if s.pending()] or [
                key.fileobj for key, _ in sel.select(timeout=1)
            ]
            for sock in ready:
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                if not data:
                    return
                out = peer[sock]  # type: ignore[index]
                out.setblocking(True)
                out.sendall(data)
                out.setblocking(False)


# --- catchers: servers that get as far as the credential -----------------------------

PG_SSL_REQUEST_CODE, PG_GSSENC_REQUEST_CODE = 80877103, 80877104
PG_AUTH_CLEARTEXT = b"R" + struct.pack("!ii", 8, 3)  # AuthenticationCleartextPassword


def pg_error(sqlstate: bytes, message: bytes) -> bytes:
    """A PostgreSQL ErrorResponse (FATAL)."""
    fields = b"SFATAL\0VFATAL\0C" + sqlstate + b"\0M" + message + b"\0\0"
    return b"E" + struct.pack("!i", 4 + len(fields)) + fields


def pg_cleartext_password(sock: socket.socket, server: FakeServer) -> None:
    """A PostgreSQL server without TLS that asks for the password in clear.

    It declines TLS and GSS encryption ('N'), takes the startup message, sends
    AuthenticationCleartextPassword, records the password message and refuses the login.
    """
    while True:
        length = int.from_bytes(_read_exactly(sock, server, 4), "big")
        body = _read_exactly(sock, server, length - 4)
        if int.from_bytes(body[:4], "big") not in (PG_SSL_REQUEST_CODE, PG_GSSENC_REQUEST_CODE):
            break  # the startup message
        sock.sendall(b"N")
    sock.sendall(PG_AUTH_CLEARTEXT)
    _read_exactly(sock, server, 1)  # 'p'
    length = int.from_bytes(_read_exactly(sock, server, 4), "big")
    _read_exactly(sock, server, length - 4)  # the password, as it is
    sock.sendall(pg_error(b"28P01", b"password authentication failed"))
    server.drain(sock)


MYSQL_SALT = b"12345678" + b"123456789012"  # what `mysql_greeting` offers


def mysql_password_catcher(context: ssl.SSLContext | None = None) -> Handler:
    """A MySQL server that asks for ``sha256_password`` and reads the password it is sent.

    With `context` it offers TLS and terminates it: the client then sends the password as
    it is. Without, it sends a public key of its own when asked, and decrypts the
    password the client encrypts to it into `revealed`. Either way it refuses the login.
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sha1 = hashes.SHA1()  # noqa: S303  (what sha256_password's RSA padding uses)
    oaep = padding.OAEP(mgf=padding.MGF1(sha1), algorithm=sha1, label=None)

    def login(conn: socket.socket | ssl.SSLSocket, server: FakeServer, sequence: int) -> None:
        mysql_read_packet(conn, server)  # over TLS: the password itself; else a key request
        if context is None:
            conn.sendall(mysql_packet(b"\x01" + public, sequence))
            encrypted = mysql_read_packet(conn, server)
            server.revealed += _xor(key.decrypt(encrypted, oaep), MYSQL_SALT)
            sequence += 2
        conn.sendall(mysql_packet(ACCESS_DENIED, sequence))
        server.drain(conn)

    def handler(sock: socket.socket, server: FakeServer) -> None:
        caps = MYSQL_PROTOCOL_41 | MYSQL_SECURE | MYSQL_PLUGIN_AUTH
        sock.sendall(mysql_greeting(b"sha256_password", caps | (MYSQL_SSL if context else 0)))
        if context is None:
            login(sock, server, 2)
            return
        mysql_read_packet(sock, server)  # the client's TLS request
        with context.wrap_socket(sock, server_side=True) as tls:
            login(tls, server, 3)

    return handler


def _xor(data: bytes, salt: bytes) -> bytes:
    return bytes(b ^ salt[i % len(salt)] for i, b in enumerate(data))


def resolving(names: Mapping[str, str]) -> Callable[..., Any]:
    """`socket.getaddrinfo`, except that `names` resolve to the given addresses.

    A test's DNS: monkeypatch it over ``socket.getaddrinfo`` so that a remote name (an
    endpoint, a bastion) leads to a fake server on loopback.
    """
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower() in names:
            host = names[host.lower()]
        return real(host, port, *args, **kwargs)

    return getaddrinfo
