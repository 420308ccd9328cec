"""One adapter per driver, all of one shape.

Each module exposes ``connect_kwargs(cfg, cred)`` (pure: TLS, timeouts, tunnel),
``connect(cfg, cred, **extra)`` (imports its driver on first use) and
``classify(exc)``. Error-code tables live only in the adapters.
"""

from __future__ import annotations

import enum
import importlib
from typing import Any, Protocol

from securedb.config import Config
from securedb.credentials.base import Credential

__all__ = ["Driver", "Failure", "load"]


class Failure(enum.Enum):
    """What kind of failure a driver error is."""

    AUTH = "the database refused the credentials"
    TLS = "TLS could not be verified"
    FAILOVER = "the connection to the server was lost or refused"
    READ_ONLY = "the server is read-only (a standby, or a writer that was demoted)"


class Driver(Protocol):
    def connect_kwargs(self, cfg: Config, cred: Credential) -> dict[str, Any]: ...
    def connect(self, cfg: Config, cred: Credential, **extra: Any) -> Any: ...
    def classify(self, exc: BaseException) -> Failure | None: ...


def load(engine: str) -> Driver:
    """The adapter module for ``"postgresql"`` or ``"mysql"``."""
    module: Any = importlib.import_module(f"securedb.drivers.{_MODULES[engine]}")
    return module  # type: ignore[no-any-return]


_MODULES = {"postgresql": "postgres", "mysql": "mysql"}
