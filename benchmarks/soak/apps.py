"""The two app servers of the soak, started as in production, and their workers' /proc.

- the Django example under ``gunicorn --preload`` with 4 sync workers, on IAM tokens;
- the FastAPI example under ``uvicorn --workers 4``, on the rotating secret.

Both reach the writer through the cluster endpoint's name with ``tunnel=`` to a
forwarder that plays its DNS (as tests/test_failover_load.py does), and verify the
bed's CA. Each server runs in a session of its own, so that `stop` can end everything
it started, workers included, by the group's id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bed import procs

ROOT = Path(__file__).resolve().parents[2]  # the repository: the apps are `examples.*`
WORKERS = 4
READY_TIMEOUT = 60.0


class AppServer:
    """One app server: its master process and the workers it forks or spawns."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, log: Path):
        self.name, self.argv, self.env, self.port, self.log = name, argv, env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> AppServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        procs.wait_until(self._ready, self.name, self.proc, self.log, READY_TIMEOUT)
        return self

    def _ready(self) -> bool:
        if len(self.workers()) < WORKERS:
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/stats", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def workers(self) -> list[int]:
        """The live worker processes: the master's children that are not zombies (nor
        multiprocessing's resource tracker, which uvicorn's spawned workers may start)."""
        return [
            pid
            for pid in children(self.pid)
            if state(pid) not in (None, "Z") and b"resource_tracker" not in cmdline(pid)
        ]

    def kill_worker(self) -> int:
        """SIGKILL one worker (the one with the lowest pid); its pid."""
        victim = min(self.workers())
        os.kill(victim, signal.SIGKILL)
        return victim

    def terminate(self, timeout: float = 30.0) -> dict[int, float | None]:
        """SIGTERM the master; each worker's seconds until it exited (None: still alive
        after `timeout`). Workers are polled every 5 ms; a zombie has exited."""
        assert self.proc is not None
        pending = set(self.workers())
        exited: dict[int, float | None] = dict.fromkeys(pending)
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while pending and time.monotonic() - sent < timeout:
            for pid in list(pending):
                if state(pid) in (None, "Z"):
                    exited[pid] = time.monotonic() - sent
                    pending.discard(pid)
            time.sleep(0.005)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        return exited

    def stop(self) -> None:
        """End the server and every process of its session, if any is left."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None


def django(env: dict[str, str], port: int, log: Path) -> AppServer:
    argv = [sys.executable, "-m", "gunicorn", "--preload", "--workers", str(WORKERS)]
    argv += ["--worker-class", "sync", "--bind", f"127.0.0.1:{port}"]
    argv += ["--graceful-timeout", "10", "--no-control-socket", "examples.django_app.wsgi"]
    return AppServer("gunicorn (Django)", argv, env, port, log)


def fastapi(env: dict[str, str], port: int, log: Path) -> AppServer:
    argv = [sys.executable, "-m", "uvicorn", "examples.fastapi_app.app:app"]
    argv += ["--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--no-access-log", "--timeout-graceful-shutdown", "10"]
    return AppServer("uvicorn (FastAPI)", argv, env, port, log)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def state(pid: int) -> str | None:
    """The process's state letter (R, S, Z ...), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def sample(pid: int, http: int, db: set[int]) -> Any:
    """Threads, open file descriptors and RSS (KiB) of `pid`, or None if it is gone.

    The descriptors are also counted by what they are: ``fds_http``, connections to the
    app's port `http` (requests being served: as many as the load has in flight, and
    connections just ended whose descriptor is not released yet), ``fds_db``,
    connections to a port in `db` (the pool's), and ``fds_rest``, all others (files,
    pipes, the listening socket, epoll, AWS API connections).
    """
    try:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        fds = os.listdir(f"/proc/{pid}/fd")
    except (OSError, ValueError):
        return None
    links = [link for fd in fds if (link := _readlink(f"/proc/{pid}/fd/{fd}")) is not None]
    sockets = tcp_sockets()  # after the links: a socket listed there is in the table
    kinds = {"http": 0, "db": 0}
    unix = unix_sockets()
    for link in links:
        if not link.startswith("socket:["):
            continue
        inode = int(link[8:-1])
        ports = sockets.get(inode)
        if ports is not None and ports[0] == http and ports[1] != 0:
            kinds["http"] += 1
        elif ports is not None and ports[1] in db:
            kinds["db"] += 1
        elif ports is None and inode not in unix:
            # A TCP connection already gone (TIME_WAIT sockets have no inode) whose
            # descriptor is not closed yet: gunicorn's sync worker keeps the last
            # client's until it accepts the next one.
            kinds["http"] += 1
    return {
        "threads": int(status["Threads"]),
        "fds": len(links),
        "fds_http": kinds["http"],
        "fds_db": kinds["db"],
        "fds_rest": len(links) - kinds["http"] - kinds["db"],
        "rss_kib": int(status["VmRSS"].split()[0]),
    }


def _readlink(path: str) -> str | None:
    """Where a descriptor points, or None if it was closed since it was listed."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def descriptors(pid: int) -> list[str]:
    """What each open descriptor of `pid` is: ``file``, ``pipe``, ``tcp <local>-><remote>``
    (ports), another ``socket``..., for the report's record of the reference and the end
    (no path: the report is published)."""
    sockets = tcp_sockets()
    out = []
    try:
        fds = sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
        for fd in fds:
            link = _readlink(f"/proc/{pid}/fd/{fd}") or "closed"
            ports = sockets.get(int(link[8:-1])) if link.startswith("socket:[") else None
            out.append(f"{fd}: " + (f"tcp {ports[0]}->{ports[1]}" if ports else _kind(link)))
    except OSError:
        pass
    return out


def unix_sockets() -> set[int]:
    """The inodes of every Unix socket of this network namespace."""
    with contextlib.suppress(OSError), open("/proc/net/unix") as lines:
        next(lines)
        return {int(fields[6]) for fields in map(str.split, lines) if len(fields) > 6}
    return set()


def _kind(link: str) -> str:
    """``socket``, ``pipe``, ``anon_inode:[eventpoll]``... or ``file`` for a path."""
    if link.startswith("/"):
        return "file (deleted)" if link.endswith(" (deleted)") else "file"
    return link.split(":[", 1)[0] if link[:1].isalpha() and ":[" in link else link


def tcp_sockets() -> dict[int, tuple[int, int]]:
    """Every TCP socket of this network namespace: inode → (local port, remote port)."""
    found: dict[int, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if inode:
                    found[inode] = (
                        int(local.rsplit(":", 1)[1], 16),
                        int(remote.rsplit(":", 1)[1], 16),
                    )
    return found


def stats(url: str, pids: set[int], tries: int = 400) -> dict[int, dict[str, object]]:
    """``/stats`` of each worker in `pids`: asked again until every one has answered."""
    seen: dict[int, dict[str, object]] = {}
    for _ in range(tries):
        if pids <= seen.keys():
            break
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{url}/stats", timeout=5) as answer:
                got = json.loads(answer.read())
            seen[int(got["pid"])] = got
    return {pid: seen[pid] for pid in pids if pid in seen}


def age(pid: int) -> float | None:
    """Seconds since `pid` started, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    started = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
    return uptime - started / os.sysconf("SC_CLK_TCK")
