"""pool(): a psycopg_pool ConnectionPool whose every new connection securedb opens.

psycopg_pool calls ``connection_class.connect()`` for each physical connection; the
class given here sends that call to the `Connector`, so credentials are resolved (and
refreshed, and retried once if refused) per connection. `invalidate()` discards every
connection made before it, at checkout: after a failover none to the old writer survives.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from securedb import _extras, _otel
from securedb.config import Config, split_options
from securedb.connector import Connector
from securedb.drivers import postgres
from securedb.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

    from securedb._asyncpg_pool import AsyncpgPool
    from securedb._pools import AsyncConnectionPool, ConnectionPool

__all__ = ["async_pool", "pool"]

POOL_DEFAULTS: dict[str, Any] = {
    "min_size": 1,
    "max_size": 10,
    "max_lifetime": 1500.0,
    "open": True,
}
POOL_MODULES = ("psycopg", "psycopg_pool")


def pool(url: str | Config | None = None, **options: Any) -> ConnectionPool:
    """A psycopg_pool `ConnectionPool` for a PostgreSQL `url`, credentials per connection.

    Options are securedb's (see `Config`) and ``ConnectionPool``'s (``min_size``,
    ``max_size``, ``timeout``, ``max_lifetime`` ...). Defaults: 1 to 10 connections,
    each checked before it is handed out, replaced after 25 minutes. The pool has one
    more method, ``invalidate()``, which `run_transaction` calls after a failover.

    Raises:
        ConfigError: an option is invalid, or the URL is not PostgreSQL.
        ModuleNotFoundError: psycopg or psycopg_pool is not installed; the message
            names the extra (``pip install 'securedb[postgresql]'``).
    """
    pool: ConnectionPool = _built(url, options, _pool)
    return pool


def _pool(connector: Connector, pool_options: dict[str, Any]) -> ConnectionPool:
    cfg = _postgres_config(connector, pool_options)
    _extras.require("securedb.pool()", POOL_MODULES)
    import psycopg
    import psycopg_pool

    generations = _Generations()
    metrics = _otel.pool_metrics(_otel.pool_name(cfg, pool_options.get("name")), _pool_counts)
    Connection = connection_class(connector, generations.note, metrics)

    def check(conn: Any) -> None:
        if generations.stale(conn):
            conn.close()  # closed, so the pool discards it instead of taking it back
            raise psycopg.OperationalError("made before a failover; discarded")
        psycopg_pool.ConnectionPool.check_connection(conn)

    from securedb._pools import ConnectionPool

    defaults = {**POOL_DEFAULTS, "check": check, "name": f"securedb {cfg.endpoint}"}
    try:
        return ConnectionPool(
            connector,
            generations,
            metrics,
            connection_class=Connection,
            **{**defaults, **pool_options},
        )
    except TypeError as exc:
        raise ConfigError(f"{exc}; see psycopg_pool.ConnectionPool for pool options") from None


def connection_class(
    connector: Connector,
    note: Callable[[Any], Any] | None = None,
    metrics: _otel.PoolMetrics | None = None,
) -> type[psycopg.Connection[Any]]:
    """A psycopg ``Connection`` class whose ``connect()`` opens through `connector`.

    psycopg_pool calls ``connection_class.connect(conninfo, **kwargs)`` for each new
    connection: the conninfo is ignored (the endpoint is the connector's); ``dbname``
    and the other kwargs are that connection's own and go through the merge point.
    `note`, if given, sees each new connection, and `metrics` times it. Shared by
    `pool` and Django's pool.
    """
    import psycopg

    class Connection(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            start = time.perf_counter()
            conn = connector.connect(**kwargs)
            if metrics is not None:
                metrics.created(start)
            return note(conn) if note is not None else conn

    return Connection


@overload
def async_pool(
    url: str | Config | None = None, *, driver: Literal["asyncpg"], **options: Any
) -> AsyncpgPool: ...
@overload
def async_pool(url: str | Config | None = None, **options: Any) -> AsyncConnectionPool: ...
def async_pool(url: str | Config | None = None, **options: Any) -> Any:
    """`pool`'s async twin: a psycopg_pool `AsyncConnectionPool`, not yet open.

    With ``driver="asyncpg"`` (or a ``postgresql+asyncpg://`` URL) it is asyncpg's own
    ``Pool`` instead (`securedb._asyncpg_pool.AsyncpgPool`), with asyncpg's options.

    ``async with securedb.async_pool(url, ...) as pool:`` opens it (or ``await
    pool.open()``). Same options, defaults and ``invalidate()`` as `pool`; each new
    connection's credential is taken inline when cached, else fetched in a thread.

    Raises:
        ConfigError: an option is invalid, or the URL is not PostgreSQL.
        ModuleNotFoundError: psycopg or psycopg_pool is not installed; the message
            names the extra (``pip install 'securedb[postgresql]'``).
    """
    return _built(url, {"open": False, **options}, _async_pool)


def _built(
    url: str | Config | None, options: dict[str, Any], build: Callable[[Connector, Any], Any]
) -> Any:
    """`build(connector, pool_options)`; the connector is released if that fails."""
    cfg, pool_options = split_options(url, options)
    if pool_options.get("conninfo"):
        raise ConfigError(
            "a securedb pool takes no conninfo: pass the endpoint as the URL, and driver "
            "arguments in connect_args= or kwargs="
        )
    connector = Connector(cfg, owned=True)
    try:
        return build(connector, pool_options)
    except BaseException:
        connector.close()
        raise


def _async_pool(connector: Connector, pool_options: dict[str, Any]) -> Any:
    if connector.config.driver == "asyncpg":
        return _asyncpg_pool(connector, pool_options)
    cfg = _postgres_config(connector, pool_options)
    _extras.require("securedb.async_pool()", POOL_MODULES)
    import psycopg
    import psycopg_pool

    generations = _Generations()
    metrics = _otel.pool_metrics(_otel.pool_name(cfg, pool_options.get("name")), _pool_counts)

    class AsyncConnection(psycopg.AsyncConnection[Any]):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            start = time.perf_counter()
            conn = await connector.connect_async(**kwargs)
            if metrics is not None:
                metrics.created(start)
            return generations.note(conn)

    async def check(conn: Any) -> None:
        if generations.stale(conn):
            await conn.close()
            raise psycopg.OperationalError("made before a failover; discarded")
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)

    from securedb._pools import AsyncConnectionPool

    defaults = {**POOL_DEFAULTS, "check": check, "name": f"securedb {cfg.endpoint}"}
    try:
        return AsyncConnectionPool(
            connector,
            generations,
            metrics,
            connection_class=AsyncConnection,
            **{**defaults, **pool_options},
        )
    except TypeError as exc:
        raise ConfigError(f"{exc}; see psycopg_pool.AsyncConnectionPool for options") from None


def _asyncpg_pool(connector: Connector, pool_options: dict[str, Any]) -> Any:
    """asyncpg's own Pool: its options (``min_size``, ``max_size``, ``init`` ...), and
    connect kwargs checked as ``connect_args`` are."""
    _extras.require("securedb.async_pool()", ("asyncpg",))
    pool_options.pop("open", None)  # psycopg_pool's: an asyncpg pool opens when awaited
    from securedb._asyncpg_pool import AsyncpgPool
    from securedb.drivers import asyncpg

    asyncpg.check_args(
        {k: v for k, v in pool_options.items() if k not in ASYNCPG_POOL_OPTIONS},
        connector.config.is_local,
    )
    return AsyncpgPool(connector, **pool_options)


ASYNCPG_POOL_OPTIONS = frozenset(
    {"min_size", "max_size", "max_queries", "max_inactive_connection_lifetime"}
    | {"setup", "init", "reset", "connection_class", "record_class"}
)


def _pool_counts(pool: Any) -> tuple[int, int]:
    """A psycopg pool's idle and used connections (those being made count as used).
    A closed pool has none, though psycopg_pool still counts the connections it closed."""
    if pool.closed:
        return 0, 0
    stats = pool.get_stats()
    return stats["pool_available"], stats["pool_size"] - stats["pool_available"]


def _postgres_config(connector: Connector, pool_options: dict[str, Any]) -> Config:
    cfg = connector.config
    if cfg.engine != "postgresql":
        raise ConfigError("pool() is for PostgreSQL (psycopg_pool); use engine() for MySQL")
    # Early, in the caller's thread: the pool's workers would only log a refusal.
    postgres.check_environment()
    kwargs = pool_options.get("kwargs")
    if isinstance(kwargs, Mapping):
        postgres.check_args(kwargs, cfg.is_local)  # every connection checks them again
    return cfg


class _Generations:
    """Which connections were made before the last `invalidate()` (a failover)."""

    def __init__(self) -> None:
        self.current = 0
        self.born: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    def note(self, conn: Any) -> Any:
        self.born[conn] = self.current
        return conn

    def stale(self, conn: Any) -> bool:
        return self.born.get(conn, -1) < self.current

    def invalidate(self) -> None:
        self.current += 1
