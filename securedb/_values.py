"""One option value read and checked: a flag, a choice, a number in range, a port, a trust
store path, a tunnel address, a host name. Each raises a `ConfigError` that names the
option, the value and what it expects."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from securedb.errors import ConfigError

__all__ = [
    "ca_bundle",
    "check_host",
    "choice",
    "flag",
    "integer",
    "is_loopback",
    "number",
    "port",
    "tunnel",
]


def flag(value: Any, name: str) -> bool:
    """A bool, or its spelling in a URL or environment variable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in FLAGS:
        return FLAGS[value.lower()]
    raise ConfigError(f"bad value for {name}: {value!r}; expected True or False")


FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def choice(value: Any, name: str, allowed: tuple[str, ...]) -> Any:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(
            f"bad value for {name}: {value!r}; use one of {', '.join(repr(a) for a in allowed)}"
        )
    return value


def number(value: Any, name: str, low: float, high: float) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        read = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"bad value for {name}: {value!r}; expected a number") from None
    if not low <= read <= high:  # NaN fails this too
        raise ConfigError(f"bad value for {name}: {value!r}; must be between {low} and {high}")
    return read


def integer(value: Any, name: str, low: int, high: int) -> int:
    whole = number(value, name, low, high)
    if not whole.is_integer():
        raise ConfigError(f"bad value for {name}: {value!r}; expected a whole number")
    return int(whole)


def port(value: Any, name: str) -> int:
    return integer(value, name, 1, 65535)


def ca_bundle(value: Any) -> str:
    try:
        path = Path(os.fspath(value)).expanduser()
    except TypeError:
        raise ConfigError(f"ca_bundle must be a path, not {type(value).__name__}") from None
    if not path.is_file():
        raise ConfigError(
            f"ca_bundle {str(path)!r} is not a file; pass the path of a PEM "
            "trust store, or leave it out to use the bundled RDS CA"
        )
    if b"-----BEGIN CERTIFICATE-----" not in path.read_bytes():
        raise ConfigError(f"ca_bundle {str(path)!r} holds no PEM certificate")
    return str(path)


def tunnel(value: Any) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (or a tuple) of the local end of a port forward."""
    host: Any = None
    if isinstance(value, tuple) and len(value) == 2:
        host, local_port = value
    elif isinstance(value, str):
        match = TUNNEL.match(value)
        if match:
            host, local_port = match.group("v6") or match.group("host"), match.group("port")
    if not isinstance(host, str) or not host:
        raise ConfigError(
            f"bad value for tunnel: {value!r}; expected 'host:port' of the local end of an "
            "SSM or SSH port forward, like '127.0.0.1:5433' or '[::1]:5433'"
        )
    return host, port(local_port, "tunnel port")


TUNNEL = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]\s]+)):(?P<port>\d+)$")


def is_loopback(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8, ::1 and Unix-socket directories."""
    if not host:
        return False
    if "," in host:  # a libpq host list: another host could follow
        return False
    if host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str) -> None:
    """One host: a DNS name, an IP address or a Unix-socket directory, never a list.

    libpq reads ``a,b`` as two hosts to try in turn, so a list could send the socket to a
    second, remote host after a first, local one (and relaxed TLS with it).
    """
    if host.startswith("/"):
        good = "," not in host and host.isprintable()
    else:
        good = bool(HOST_NAME.match(host)) or _is_address(host)
    if not good:
        raise ConfigError(
            f"bad host {host!r}: expected one DNS name, IP address or Unix-socket directory "
            "(securedb takes no host lists)"
        )


HOST_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
