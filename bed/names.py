"""A private /etc/hosts for the calling process, so the bed can move a DNS name.

`enter_private_hosts` gives this process a mount namespace of its own and bind-mounts a
copy of /etc/hosts over it; the machine's file is never touched, and the mount goes away
with the process. Children started afterwards (servers, clients) inherit the namespace.
glibc reads /etc/hosts again at each lookup, so `Hosts.point` takes effect at once.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from pathlib import Path

from bed.procs import BedError

CLONE_NEWNS = 0x00020000
ETC_HOSTS = Path("/etc/hosts")
ADDRESS_WIDTH = 15  # the longest IPv4 address: every line of ours is padded to this width


class Hosts:
    """The private hosts file: each name `point` gives has a fixed-width line of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # a timer thread may point a name meanwhile

    def point(self, name: str, address: str) -> None:
        """Make `name` resolve to `address` (IPv4), in place.

        A name seen before gets its address overwritten with one `pwrite` of the same
        number of bytes in the same inode (the bind mount follows the inode), so a lookup
        running meanwhile sees the old address or the new one, never no line at all.
        """
        if len(address) > ADDRESS_WIDTH or " " in name:
            raise ValueError(f"bad hosts entry: {address!r} {name!r}")
        field = address.ljust(ADDRESS_WIDTH).encode()
        suffix = f" {name}\n".encode()
        with self._lock:
            data = self.path.read_bytes()
            offset = _line_offset(data, suffix)
            if offset is None:  # a new name: a line appended
                lead = b"" if not data or data.endswith(b"\n") else b"\n"
                _pwrite(self.path, lead + field + suffix, len(data))
            else:
                _pwrite(self.path, field, offset)

    def close(self) -> None:
        """Unmount the file and remove it: the process sees the machine's /etc/hosts again."""
        _run("umount", str(ETC_HOSTS))
        self.path.unlink()


def _pwrite(path: Path, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _line_offset(data: bytes, suffix: bytes) -> int | None:
    """Where the address field of our line ending in `suffix` starts, if there is one."""
    offset = 0
    for line in data.splitlines(keepends=True):
        if len(line) == ADDRESS_WIDTH + len(suffix) and line.endswith(suffix):
            return offset
        offset += len(line)
    return None


def can_enter() -> str | None:
    """None if this process could enter a private /etc/hosts, else why not (enters nothing)."""
    if os.geteuid() != 0:
        return "a private /etc/hosts needs root (mount namespaces and bind mounts)"
    for tool in ("mount", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not found: a private /etc/hosts needs util-linux"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"no mount namespace for a private /etc/hosts: {probe.stderr.decode().strip()}"
    return None


def enter_private_hosts(path: Path) -> Hosts:
    """Move this process into a mount namespace of its own, with `path` as its /etc/hosts.

    `path` starts as a copy of the current /etc/hosts. unshare(2) moves only the calling
    thread: a thread already running keeps the machine's file, and so does whatever it
    starts later. So this works only while the process has a single thread, and refuses
    while another Python thread runs: call it early (at pytest_configure, say). Native
    worker threads that resolve no names, such as the BLAS pool importing numpy starts
    (pytest-randomly imports it), are left where they are.

    Raises:
        BedError: another Python thread runs, or unshare or mount failed.
    """
    others = threading.active_count() - 1
    if others:
        raise BedError(
            f"cannot enter a private /etc/hosts: {others} other Python thread(s) run, and "
            "unshare(2) would move only the calling one; enter before starting any"
        )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise BedError(f"unshare(CLONE_NEWNS) failed: {os.strerror(ctypes.get_errno())}")
    # Mounts made from now on stay in this namespace, whatever / propagated before.
    _run("mount", "--make-rprivate", "/")
    shutil.copyfile(ETC_HOSTS, path)
    path.chmod(0o644)
    _run("mount", "--bind", str(path), str(ETC_HOSTS))
    return Hosts(path)


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BedError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
