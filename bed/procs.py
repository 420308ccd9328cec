"""Process, port and file helpers shared by the bed's servers."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str, *dirs: str) -> str:
    """The full path of a server binary, looked up in `dirs` then on PATH."""
    for d in dirs:
        candidate = Path(d) / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        raise BedError(f"{name} not found; run scripts/setup.sh as root to install it")
    return found


class BedError(RuntimeError):
    """The bed could not start one of its parts."""


def chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def user_env(user: str | None) -> dict[str, str]:
    """The environment for a child run as `user`: ours, with that user's HOME."""
    env = dict(os.environ)
    if user is not None:
        env["HOME"] = pwd.getpwnam(user).pw_dir
    return env


def run_as(
    user: str, argv: Sequence[str], *, stdin: str | None = None, env: dict[str, str] | None = None
) -> str:
    """Run a command to completion as `user`; raise BedError with its output on failure.

    Secrets go through `stdin` or `env`, never `argv`.
    """
    proc = subprocess.run(
        argv,
        user=user,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env={**user_env(user), **(env or {})},
    )
    if proc.returncode != 0:
        raise BedError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc.stdout


def spawn(argv: Sequence[str], log: Path, user: str | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running server (as `user` if given), its output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            user=user,
            env=user_env(user),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop a server by pid: `sig`, then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(
    ready: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[bytes] | None,
    log: Path | None = None,
    timeout: float = 30.0,
) -> None:
    """Poll `ready` until it holds; fail early if `proc` died, showing the tail of `log`."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise BedError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise BedError(f"{what} not ready after {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.02)


def tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def alive(pid: int) -> bool:
    """Whether a process of this id exists (a zombie counts until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
