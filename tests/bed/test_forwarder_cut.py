"""The forwarder's cut at the next message, and its listen address and port."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from bed.forwarder import Forwarder


class Recording(socketserver.BaseRequestHandler):
    """Notes what it receives, answers `ok:` and the data."""

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):
            while data := self.request.recv(1024):
                self.server.received.append(data)  # type: ignore[attr-defined]
                self.request.sendall(b"ok:" + data)


@pytest.fixture
def server() -> Iterator[socketserver.ThreadingTCPServer]:
    made = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Recording)
    made.daemon_threads = True
    made.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=made.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield made
    made.shutdown()
    made.server_close()
    thread.join()


@pytest.fixture
def fwd(server: socketserver.ThreadingTCPServer) -> Iterator[Forwarder]:
    with Forwarder(server.server_address) as forwarder:  # type: ignore[arg-type]
        yield forwarder


def ask(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(1024)


def ended(sock: socket.socket) -> bool:
    """The connection was closed or reset, with nothing more to read."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("delivered", [False, True])
def test_cut_next_message(
    fwd: Forwarder, server: socketserver.ThreadingTCPServer, delivered: bool
) -> None:
    with socket.create_connection(fwd.address, timeout=5) as sock:
        assert ask(sock, b"BEGIN") == b"ok:BEGIN"
        fwd.cut_next_message(delivered=delivered)
        sock.sendall(b"COMMIT")
        assert ended(sock)  # no answer reaches the client either way
    assert fwd.cuts == 1
    wanted = [b"BEGIN", b"COMMIT"] if delivered else [b"BEGIN"]
    deadline = time.monotonic() + 5
    while server.received != wanted and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)  # the server may still be reading what was delivered
    assert server.received == wanted  # type: ignore[attr-defined]
    with socket.create_connection(fwd.address, timeout=5) as sock:
        assert ask(sock, b"again") == b"ok:again"  # one cut per call
    assert fwd.cuts == 1


def test_listens_on_the_address_and_port_given(server: socketserver.ThreadingTCPServer) -> None:
    target: tuple[str, int] = server.server_address  # type: ignore[assignment]
    with (
        Forwarder(target, host="127.0.0.2") as first,
        Forwarder(target, host="127.0.0.3", port=first.port) as second,
    ):
        assert (first.address, second.address) == (
            ("127.0.0.2", first.port),
            ("127.0.0.3", first.port),
        )
        for forwarder in (first, second):
            with socket.create_connection(forwarder.address, timeout=5) as sock:
                assert ask(sock, b"hi") == b"ok:hi"
        assert (first.accepted, second.accepted) == (1, 1)
