"""A controllable TCP forwarder, for tunnels, DNS flips and network faults.

It listens on a loopback port and pipes each connection to the current target. Tests
steer it: `switch` the target (a DNS flip), `drop` every live connection (a reset),
`refuse` new ones (the port closes), or `blackhole` traffic (a partition: nothing
arrives and nothing is refused).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from types import TracebackType

LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN


class Forwarder:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target, self.host, self.port = target, host, 0
        self.accepted = 0
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._blackholed = False

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def connections(self) -> int:
        return len(self._pairs)

    def start(self) -> Forwarder:
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop, listener)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(
            target=target,
            args=args,
            daemon=True,  # type: ignore[arg-type]
            name=f"forwarder-{self.port}",
        )
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()} | {thread}
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by refuse() or stop()
            self.accepted += 1
            self._spawn(self._pipe, client)

    def _pipe(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        pair = (client, server)
        with self._lock:
            self._pairs.add(pair)
        try:
            self._pump(client, server)
        finally:
            with self._lock:
                self._pairs.discard(pair)
            # A graceful close, so the client reads what the server said last (say, an
            # authentication error); after drop() the sockets linger 0 and reset instead.
            _close(client)
            _close(server)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peer = {client: server, server: client}
        with selectors.DefaultSelector() as sel:
            for sock in peer:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select(timeout=0.05):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    if not self._blackholed:
                        peer[sock].setblocking(True)
                        peer[sock].sendall(data)
                        peer[sock].setblocking(False)
                if client.fileno() < 0 or server.fileno() < 0:
                    return

    def switch(self, target: tuple[str, int]) -> None:
        """Send new connections to `target`; live ones keep their server."""
        self.target = target

    def drop(self) -> None:
        """Reset every live connection, both sides."""
        with self._lock:
            pairs = list(self._pairs)
        for client, server in pairs:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                    sock.shutdown(socket.SHUT_RD)  # wakes the pump, which closes: a reset

    def refuse(self) -> None:
        """Close the port: new connection attempts are refused."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop
            self._listener.close()
            self._listener = None

    def accept(self) -> None:
        """Listen again, on the same port, after `refuse()`."""
        if self._listener is None:
            self._listen()

    def blackhole(self) -> None:
        """Forward nothing in either direction, refuse nothing: a network partition."""
        self._blackholed = True

    def heal(self) -> None:
        self._blackholed = False

    def stop(self) -> None:
        self.refuse()
        self.drop()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    sock.close()
