"""One adapter per driver, all of one shape.

Each module exposes ``check_args(args, local)`` (refuses driver arguments that securedb
owns, that it does not know, or that weaken TLS for a server off this machine),
``connect_kwargs(cfg, cred, args)`` (the one place where driver arguments are merged,
securedb's endpoint and TLS keys last), ``connect(cfg, cred, args)`` and its twin
``connect_async`` (each imports its driver on first use), ``dialect_args()`` (what
SQLAlchemy's dialect would ask of the driver), ``classify(exc)``, and
``read_topology(conn)`` with its twin (an Aurora cluster's instances, as the server
reports them; None from a server that has no such view).
Error-code and argument tables live only in the adapters.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from securedb.config import OPTIONS, Config
from securedb.credentials.base import Credential
from securedb.errors import ConfigError
from securedb.topology import Answer

__all__ = ["ArgTables", "Driver", "Failure", "check_config", "check_owned", "classify", "load"]


class Failure(enum.Enum):
    """What kind of failure a driver error is."""

    AUTH = "the database refused the credentials"
    TLS = "TLS could not be verified"
    FAILOVER = "the connection to the server was lost or refused"
    READ_ONLY = "the server is read-only (a standby, or a writer that was demoted)"


class Driver(Protocol):
    ASYNC_IMPORTS: tuple[str, ...]  # the modules `connect_async` needs, imported off the loop

    def check_args(self, args: Mapping[str, Any], local: bool) -> None: ...
    def connect_kwargs(
        self, cfg: Config, cred: Credential, args: Mapping[str, Any]
    ) -> dict[str, Any]: ...
    def dialect_args(self) -> dict[str, Any]: ...
    def connect(self, cfg: Config, cred: Credential, args: Mapping[str, Any]) -> Any: ...
    async def connect_async(
        self, cfg: Config, cred: Credential, args: Mapping[str, Any]
    ) -> Any: ...
    def classify(self, exc: BaseException) -> Failure | None: ...
    def read_topology(self, conn: Any) -> Answer | None: ...
    async def read_topology_async(self, conn: Any) -> Answer | None: ...


def check_owned(
    args: Mapping[str, Any],
    local: bool,
    tables: ArgTables,
) -> None:
    """Refuse driver arguments that could redirect the connection or weaken its TLS.

    An argument is judged by what the driver does with it, not by its value: only names
    the adapter lists pass. `local` is true when every place the socket can go is this
    machine (`Config.is_local`): only then may TLS keys relax verify-full.

    Raises:
        ConfigError: naming the key, whichever way it came (connect_args, the URL's
            query, pool kwargs, Django's OPTIONS).
    """
    for name, value in args.items():
        if name in tables.endpoint:
            raise ConfigError(f"driver argument {name!r} is securedb's: {tables.endpoint[name]}")
        if name in tables.tls:
            if local or _among(value, tables.tls[name]):
                continue
            # A plain value is shown; a structure is not (PyMySQL's ssl dict holds a key's
            # password).
            plain = value is None or isinstance(value, (str, int, float))
            raise ConfigError(
                f"driver argument {name}{f'={value!r}' if plain else ''} would weaken TLS: "
                "securedb always verifies "
                "the certificate and host name of a server that is not on this machine "
                "(the host and the tunnel must both be loopback to relax it)"
            )
        if name not in tables.harmless:
            raise ConfigError(
                f"unknown {tables.driver} argument {name!r}{_hint(name, tables)}: securedb "
                "passes on only the arguments it knows cannot move the connection or weaken "
                f"its TLS: {', '.join(sorted(tables.harmless | tables.tls.keys()))}"
            )


def _hint(name: str, tables: ArgTables) -> str:
    """For a misspelt name, the closest of securedb's options and the driver's names that
    pass: a URL's query hands the driver every name that is not securedb's."""
    if name in OPTIONS:
        return f" ({name!r} is securedb's own option, not a driver argument)"
    known = [*OPTIONS, *tables.harmless, *tables.tls]
    close = difflib.get_close_matches(name.lower(), known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _among(value: Any, harmless: tuple[Any, ...]) -> bool:
    """`value` is one of `harmless`, of the same type: ``True == 1`` in Python, but psycopg
    writes ``sslsni=True`` and libpq reads only a leading ``1`` as on."""
    return any(type(value) is type(h) and value == h for h in harmless)


@dataclasses.dataclass(frozen=True)
class ArgTables:
    """What an adapter knows of its driver's keyword arguments."""

    driver: str
    endpoint: Mapping[str, str]  # always securedb's: the key -> what to do instead
    tls: Mapping[str, tuple[Any, ...]]  # TLS keys -> the values that change nothing
    harmless: frozenset[str]  # neither endpoint nor TLS: passed on as they are


def check_config(cfg: Config) -> None:
    """Judge `cfg`'s driver arguments (``connect_args`` and the URL's query) by its driver's
    adapter, where a connector is made; TLS keys relax only when `cfg` is local.

    Without an engine (an RDS secret names it) they are judged once the secret is read.

    Raises:
        ConfigError: naming the argument.
    """
    if cfg.engine is not None:
        load(cfg.engine, cfg.driver).check_args(cfg.connect_args, cfg.is_local)


def load(engine: str, driver: str | None = None) -> Driver:
    """The adapter module for ``"postgresql"`` or ``"mysql"``, and a driver of it.

    psycopg and PyMySQL (with aiomysql, built on it) share an adapter; asyncpg has its own.
    """
    name = "asyncpg" if driver == "asyncpg" else _MODULES[engine]
    module: Any = importlib.import_module(f"securedb.drivers.{name}")
    return module  # type: ignore[no-any-return]


def classify(exc: BaseException, engine: str) -> Failure | None:
    """What kind of failure `exc` is, whichever of the engine's drivers raised it."""
    for driver in _DRIVERS[engine]:
        failure = load(engine, driver).classify(exc)
        if failure is not None:
            return failure
    return None


_MODULES = {"postgresql": "postgres", "mysql": "mysql"}
_DRIVERS: dict[str, tuple[str | None, ...]] = {"postgresql": (None, "asyncpg"), "mysql": (None,)}
