"""One adapter per driver, all of one shape.

Each module exposes ``check_args(args, host)`` (refuses driver arguments that securedb
owns), ``connect_kwargs(cfg, cred, args)`` (pure: the one place where driver arguments
are merged, securedb's endpoint and TLS keys last), ``connect(cfg, cred, args)`` and its
twin ``connect_async`` (each imports its driver on first use) and ``classify(exc)``.
Error-code and argument tables live only in the adapters.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from securedb.config import Config, is_loopback
from securedb.credentials.base import Credential
from securedb.errors import ConfigError

__all__ = ["Driver", "Failure", "check_owned", "load"]


class Failure(enum.Enum):
    """What kind of failure a driver error is."""

    AUTH = "the database refused the credentials"
    TLS = "TLS could not be verified"
    FAILOVER = "the connection to the server was lost or refused"
    READ_ONLY = "the server is read-only (a standby, or a writer that was demoted)"


class Driver(Protocol):
    ASYNC_IMPORTS: tuple[str, ...]  # the modules `connect_async` needs, imported off the loop

    def check_args(self, args: Mapping[str, Any], host: str | None) -> None: ...
    def connect_kwargs(
        self, cfg: Config, cred: Credential, args: Mapping[str, Any]
    ) -> dict[str, Any]: ...
    def connect(self, cfg: Config, cred: Credential, args: Mapping[str, Any]) -> Any: ...
    async def connect_async(
        self, cfg: Config, cred: Credential, args: Mapping[str, Any]
    ) -> Any: ...
    def classify(self, exc: BaseException) -> Failure | None: ...


def check_owned(
    args: Mapping[str, Any],
    host: str | None,
    endpoint: Mapping[str, str],
    tls: Mapping[str, tuple[Any, ...]],
) -> None:
    """Refuse driver arguments that would redirect the connection or weaken its TLS.

    `endpoint` maps the keys securedb always sets (host, port, user, password ...) to
    what to do instead. `tls` maps TLS keys to the values that change nothing; any
    other value is refused unless `host`, the name TLS would verify, is loopback.

    Raises:
        ConfigError: naming the key, whichever way it came (connect_args, the URL's
            query, pool kwargs, Django's OPTIONS).
    """
    for name, value in args.items():
        if name in endpoint:
            raise ConfigError(f"driver argument {name!r} is securedb's: {endpoint[name]}")
        if name in tls and value not in tls[name] and not is_loopback(host):
            raise ConfigError(
                f"driver argument {name}={value!r} would weaken TLS for {host}; securedb "
                "always verifies the certificate and host name of a remote server"
            )


def load(engine: str) -> Driver:
    """The adapter module for ``"postgresql"`` or ``"mysql"``."""
    module: Any = importlib.import_module(f"securedb.drivers.{_MODULES[engine]}")
    return module  # type: ignore[no-any-return]


_MODULES = {"postgresql": "postgres", "mysql": "mysql"}
