"""A controllable TCP forwarder, for tunnels, DNS flips and network faults.

It listens on a loopback port and pipes each connection to the current target. Tests
steer it: `switch` the target (a DNS flip), `drop` every live connection (a reset),
`refuse` new ones (the port closes), `blackhole` traffic (a partition: nothing
arrives and nothing is refused), or `cut_next_message` (a connection lost at the one
message a client sends next, such as a COMMIT).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from types import TracebackType

LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN
DROP_DEADLINE = 5.0


class Forwarder:
    """Listens on `host` (any loopback address) and `port` (0: a free one)."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.target, self.host, self.port = target, host, port
        self.accepted = 0
        self.cuts = 0  # connections ended by cut_next_message()
        self._cut: str | None = None  # "before" or "after" the server gets the next message
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
            # A graceful close, so the client reads what the server said last (say, an
            # authentication error); after drop() the sockets linger 0 and reset instead.
            _close(client)
            _close(server)
            with self._lock:
                self._pairs.discard(pair)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peer = {client: server, server: client}
        cut_at_reply = False  # this connection's next answer from the server is cut
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
                    cut = self._claim_cut() if sock is client else None
                    if cut == "before" or (sock is server and cut_at_reply):
                        self.cuts += 1
                        _reset(client)  # the data is neither delivered nor answered
                        _reset(server)
                        return
                    cut_at_reply = cut_at_reply or cut == "after"
                    if not self._blackholed:
                        try:
                            peer[sock].setblocking(True)
                            peer[sock].sendall(data)
                            peer[sock].setblocking(False)
                        except OSError:
                            return  # the other side is gone (a server stopped): end this one
                if client.fileno() < 0 or server.fileno() < 0:
                    return

    def _claim_cut(self) -> str | None:
        """The pending cut, taken by the first connection whose client sends something."""
        if self._cut is None:
            return None
        with self._lock:
            cut, self._cut = self._cut, None
        return cut

    def switch(self, target: tuple[str, int]) -> None:
        """Send new connections to `target`; live ones keep their server."""
        self.target = target

    def drop(self) -> None:
        """Reset every live connection, both sides, and return once they are closed.

        Until its pump closes a connection, a request sent on it can still be forwarded
        and answered: a client's pre-ping right after drop() would pass, and only its
        next query would fail.
        """
        with self._lock:
            pairs = list(self._pairs)
        for client, server in pairs:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                    sock.shutdown(socket.SHUT_RD)  # wakes the pump, which closes: a reset
        deadline = time.monotonic() + DROP_DEADLINE
        while self._live(pairs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"forwarder: connections open {DROP_DEADLINE} s after drop()")
            time.sleep(0.005)

    def _live(self, pairs: list[tuple[socket.socket, socket.socket]]) -> bool:
        with self._lock:
            return any(pair in self._pairs for pair in pairs)

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

    def cut_next_message(self, *, delivered: bool = False) -> None:
        """Reset the connection whose client sends next, at that message, both sides.

        TLS hides the bytes, so a test arms this where it knows what its client sends
        next: at the end of a unit of work, that is the COMMIT. With `delivered` the
        server gets the message and the connection is cut before its answer reaches the
        client (the COMMIT happened, the client cannot know); without, the message never
        reaches the server. One connection is cut per call; `cuts` counts them.
        """
        self._cut = "after" if delivered else "before"

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
