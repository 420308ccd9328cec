"""The forwarder with real sockets: two tiny servers that answer with their own prefix."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from bed.forwarder import Forwarder


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(1024):
                self.request.sendall(self.server.prefix + data)  # type: ignore[attr-defined]
        except ConnectionResetError:
            pass  # the forwarder resets connections on purpose


def echo_server(prefix: bytes) -> socketserver.ThreadingTCPServer:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    server.prefix = prefix  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[tuple[tuple[str, int], tuple[str, int]]]:
    a, b = echo_server(b"a:"), echo_server(b"b:")
    yield a.server_address, b.server_address  # type: ignore[misc]
    for server in (a, b):
        server.shutdown()
        server.server_close()


@pytest.fixture
def fwd(servers: tuple[tuple[str, int], tuple[str, int]]) -> Iterator[Forwarder]:
    with Forwarder(servers[0]) as forwarder:
        yield forwarder


def ask(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(1024)


def connect(fwd: Forwarder) -> socket.socket:
    return socket.create_connection(fwd.address, timeout=5)


def test_forwards_both_ways(fwd: Forwarder) -> None:
    with connect(fwd) as sock:
        assert ask(sock) == b"a:ping"
        assert ask(sock, b"again") == b"a:again"
    assert fwd.accepted == 1


def test_switch_moves_new_connections_only(fwd: Forwarder, servers: tuple) -> None:  # type: ignore[type-arg]
    with connect(fwd) as old:
        assert ask(old) == b"a:ping"
        fwd.switch(servers[1])
        with connect(fwd) as new:
            assert ask(new) == b"b:ping"
        assert ask(old) == b"a:ping"


def test_drop_ends_live_connections(fwd: Forwarder) -> None:
    with connect(fwd) as sock:
        assert ask(sock) == b"a:ping"
        fwd.drop()
        assert fwd.connections == 0  # closed when drop() returns, not some time later
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            assert ask(sock) == b""  # nothing is forwarded any more
    with connect(fwd) as sock:
        assert ask(sock) == b"a:ping"


def test_refuse_then_accept_on_the_same_port(fwd: Forwarder) -> None:
    port = fwd.port
    fwd.refuse()
    with pytest.raises(ConnectionRefusedError):
        connect(fwd)
    fwd.accept()
    assert fwd.port == port
    with connect(fwd) as sock:
        assert ask(sock) == b"a:ping"


def test_blackhole_then_heal(fwd: Forwarder) -> None:
    with connect(fwd) as sock:
        fwd.blackhole()
        sock.settimeout(0.5)
        sock.sendall(b"lost")
        with pytest.raises(TimeoutError):
            sock.recv(1024)
    fwd.heal()
    with connect(fwd) as sock:
        assert ask(sock) == b"a:ping"


def test_target_down_closes_the_client(fwd: Forwarder) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()
    fwd.switch(dead)
    with connect(fwd) as sock, contextlib.suppress(ConnectionResetError):
        assert sock.recv(1024) == b""


def test_stop_leaves_no_thread(servers: tuple) -> None:  # type: ignore[type-arg]
    forwarder = Forwarder(servers[0]).start()
    with connect(forwarder) as sock:
        assert ask(sock) == b"a:ping"
        forwarder.stop()
    with pytest.raises(ConnectionRefusedError):
        connect(forwarder)
    assert not [t for t in threading.enumerate() if t.name == f"forwarder-{forwarder.port}"]


def test_a_peer_gone_while_forwarding_ends_the_connection() -> None:
    """A server that stops while a client's bytes are on their way (a writer flip) ends the
    connection; the pump does not die of the failed send."""
    client, client_peer = socket.socketpair()
    server, server_peer = socket.socketpair()
    with client, client_peer, server:
        client_peer.sendall(b"ping")  # ready first, so the pump forwards it first...
        server_peer.close()  # ...to a server that is gone
        Forwarder(("127.0.0.1", 1))._pump(client, server)  # returns, and raises nothing
