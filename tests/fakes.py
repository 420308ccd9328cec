"""Tiny fake database servers that misbehave on purpose and record what clients send.

They speak just enough of each protocol to reach the point where a careless client
would send a credential: a PostgreSQL server that declines TLS or presents a
certificate for other names, and a MySQL server that offers no TLS and asks for a
cleartext password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from types import TracebackType

Handler = Callable[[socket.socket, "FakeServer"], None]


class FakeServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
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


def mysql_without_tls(sock: socket.socket, server: FakeServer) -> None:
    """A MySQL handshake that lacks CLIENT_SSL and asks for mysql_clear_password."""
    protocol_41, secure, plugin_auth = 0x200, 0x8000, 0x80000
    caps = protocol_41 | secure | plugin_auth
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
        + b"mysql_clear_password\x00"
    )
    sock.sendall(struct.pack("<I", len(body))[:3] + b"\x00" + body)
    server.drain(sock)
