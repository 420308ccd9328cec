"""engine() and async_engine(): plain SQLAlchemy engines whose connections securedb opens.

The Engine and its pool are SQLAlchemy's own; securedb only supplies ``creator``, so a
checked-out connection is the driver's own and nothing wraps each query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from securedb import _extras, _otel, _state, drivers
from securedb.config import OPTIONS, Config, split_options
from securedb.connector import Connector
from securedb.errors import ClosedError, ConfigError

if TYPE_CHECKING:
    import sqlalchemy
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["async_engine", "engine"]

DIALECTS = {"postgresql": "postgresql+psycopg://", "mysql": "mysql+pymysql://"}
ASYNC_DIALECTS = {"postgresql": "postgresql+psycopg_async://", "mysql": "mysql+aiomysql://"}
ASYNCPG_DIALECT = "postgresql+asyncpg://"
# Pre-ping finds a connection the server or a proxy closed; recycle stays below the
# idle timeouts of RDS Proxy (30 min by default) and NAT gateways (350 s is their TCP
# idle limit, but pre-ping covers that).
ENGINE_DEFAULTS: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 1500}
SQLALCHEMY_MODULES = {False: ("sqlalchemy",), True: ("sqlalchemy", "greenlet")}


def _int(low: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and v >= low  # not a bool, not a float


def _seconds(low: float) -> Callable[[Any], bool]:
    return lambda v: type(v) in (int, float) and v >= low


def _echo(v: Any) -> bool:
    return any(v is flag for flag in (None, True, False)) or v == "debug"


def _is_pool_class(value: Any) -> bool:
    import sqlalchemy

    return isinstance(value, type) and issubclass(value, sqlalchemy.pool.Pool)


# SQLAlchemy checks these only when it uses them (at the first connection, or once the
# pool is full) or not at all: engine() checks them. Name -> (test, what it expects).
POOL_ARGUMENTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "pool_size": (_int(0), "an int of 0 or more (the connections kept open; 0: no limit)"),
    "max_overflow": (
        _int(-1),
        "an int of -1 or more (the connections opened beyond pool_size; -1: no limit)",
    ),
    "pool_timeout": (
        _seconds(0),
        "a number of seconds, 0 or more (the wait for a free connection)",
    ),
    "pool_recycle": (
        _seconds(-1),
        "a number of seconds (a connection's lifetime; -1: no limit)",
    ),
    "pool_pre_ping": (lambda v: isinstance(v, bool), "True or False"),
    "pool_use_lifo": (lambda v: isinstance(v, bool), "True or False"),
    "echo_pool": (_echo, "None, True, False or 'debug'"),
    "echo": (_echo, "None, True, False or 'debug'"),
    "poolclass": (_is_pool_class, "a subclass of sqlalchemy.pool.Pool"),
}


def engine(url: str | Config | None = None, **options: Any) -> sqlalchemy.engine.Engine:
    """A pooled SQLAlchemy Engine for `url` with verify-full TLS and managed credentials.

    Options are securedb's (see `Config`) and SQLAlchemy's ``create_engine`` keywords
    (``pool_size``, ``max_overflow``, ``pool_recycle`` ...), whose types are checked
    here. Defaults: pre-ping on, recycle after 25 minutes.

    Raises:
        ConfigError: an option is invalid or unknown to both securedb and SQLAlchemy.
        CredentialsError: a secret that must supply the endpoint could not be read.
        ModuleNotFoundError: SQLAlchemy or the driver is not installed; the message
            names the extra (``pip install 'securedb[sqlalchemy]'``).
    """
    eng: sqlalchemy.engine.Engine = _engine(url, options, is_async=False)
    return eng


def async_engine(url: str | Config | None = None, **options: Any) -> AsyncEngine:
    """`engine`'s async twin: an `AsyncEngine` on psycopg's async connection or aiomysql.

    Same options, defaults, TLS rules, failover listener and shared credential cache as
    `engine`. Each new connection takes a cached credential inline; fetching one runs in
    a thread, so the event loop never waits on AWS. With ``secret_id`` alone the secret
    names the engine, so it is read once here: call this at startup (FastAPI's
    `securedb.contrib.fastapi.Database` does, off the loop).

    Raises:
        ConfigError: an option is invalid or unknown to both securedb and SQLAlchemy.
        CredentialsError: a secret that must supply the endpoint could not be read.
        ModuleNotFoundError: SQLAlchemy, greenlet or the driver is not installed; the
            message names the extra (``pip install 'securedb[async]'``).
    """
    eng: AsyncEngine = _engine(url, options, is_async=True)
    return eng


def _engine(url: str | Config | None, options: dict[str, Any], is_async: bool) -> Any:
    """The engine, holding its connector's credential cache until `dispose()`."""
    function = "securedb.async_engine()" if is_async else "securedb.engine()"
    cfg, engine_options = split_options(url, options)
    check_pool_arguments(engine_options)
    if cfg.driver == "asyncpg" and not is_async:
        raise ConfigError(
            "asyncpg is async only: use securedb.async_engine() with postgresql+asyncpg://, "
            "or engine() with postgresql:// (psycopg)"
        )
    driver_modules = _extras.driver_modules(cfg.engine, is_async, cfg.driver)
    _extras.require(function, (*SQLALCHEMY_MODULES[is_async], *driver_modules))
    import sqlalchemy

    connector = Connector(cfg, owned=True)
    try:
        # An engine named by its secret is known only now.
        resolved = connector.config
        _extras.require(
            function, _extras.driver_modules(resolved.engine, is_async, resolved.driver)
        )
        current = _EngineConnector(connector)
        eng = _create(current, engine_options, is_async)
    except BaseException:
        connector.close()
        raise
    # dispose() releases the credential cache; an engine used again makes a connector.
    sync_engine = eng.sync_engine if is_async else eng
    sqlalchemy.event.listen(sync_engine, "engine_disposed", lambda _: current.close())
    return eng


class _EngineConnector:
    """An engine's connector. `dispose()` closes it, but a SQLAlchemy engine works after
    `dispose()`: its next connection makes a new connector (it shares the same cache)."""

    def __init__(self, connector: Connector) -> None:
        self._connector, self.config = connector, connector.config
        self._lock = threading.Lock()
        self.metrics: _otel.PoolMetrics | None = None
        _state.track(self)

    def get(self) -> Connector:
        if self._connector.closed:
            with self._lock:
                if self._connector.closed:
                    self._connector = Connector(self.config, owned=True)
        return self._connector

    def connect(self, **args: Any) -> Any:
        start = time.perf_counter()
        try:
            conn = self.get().connect(**args)
        except ClosedError:
            conn = None  # disposed while connecting: once more (outside the except: no context)
        if conn is None:
            conn = self.get().connect(**args)
        if self.metrics is not None:
            self.metrics.created(start)
        return conn

    async def connect_async(self, **args: Any) -> Any:
        start = time.perf_counter()
        try:
            conn = await self.get().connect_async(**args)
        except ClosedError:
            conn = None
        if conn is None:
            conn = await self.get().connect_async(**args)
        if self.metrics is not None:
            self.metrics.created(start)
        return conn

    def failed_over(self) -> None:
        self._connector.failed_over()

    def close(self) -> None:
        self._connector.close()

    def after_fork(self) -> None:
        self._lock = threading.Lock()


def _create(connector: _EngineConnector, engine_options: dict[str, Any], is_async: bool) -> Any:
    import sqlalchemy

    cfg = connector.config
    extra = drivers.load(cfg.engine or "", cfg.driver).dialect_args()
    create: Callable[..., Any]
    if is_async:
        from sqlalchemy.ext.asyncio import create_async_engine  # needs greenlet: async only

        create = create_async_engine
        dialect = ASYNCPG_DIALECT if cfg.driver == "asyncpg" else ASYNC_DIALECTS[cfg.engine or ""]
        hook = {"async_creator": lambda: connector.connect_async(**extra)}
    else:
        create, dialect = sqlalchemy.create_engine, DIALECTS[cfg.engine or ""]
        hook = {"creator": lambda: connector.connect(**extra)}
    options = {**ENGINE_DEFAULTS, **engine_options}
    if "pool" not in options:
        connector.metrics = _otel.pool_metrics(
            _otel.pool_name(cfg, options.get("pool_logging_name")), _counts
        )
    default = sqlalchemy.pool.AsyncAdaptedQueuePool if is_async else sqlalchemy.pool.QueuePool
    poolclass = options.get("poolclass", default)
    if connector.metrics is not None:
        options["poolclass"] = _metered(poolclass, connector.metrics)
    try:
        eng: Any = create(dialect, **hook, **options)
    except (TypeError, sqlalchemy.exc.ArgumentError) as exc:
        message = f"{exc}; securedb options are {', '.join(sorted(OPTIONS))}"
    else:
        sync_engine = eng.sync_engine if is_async else eng
        sqlalchemy.event.listen(sync_engine, "handle_error", _failover_listener(connector))
        if connector.metrics is not None and hasattr(sync_engine.pool, "checkedout"):
            connector.metrics.watch(sync_engine)
        return eng
    raise ConfigError(message)


def _counts(engine: Any) -> tuple[int, int]:
    """Idle and used connections of the engine's pool (a new one after each `dispose()`)."""
    return engine.pool.checkedin(), engine.pool.checkedout()


def _metered(poolclass: Any, metrics: _otel.PoolMetrics) -> Any:
    """`poolclass`, reporting waits, timeouts and uses to `metrics`. The class is the
    engine's own, so the pool `dispose()` makes next (of the same class) reports too."""
    import sqlalchemy

    class Metered(poolclass):  # type: ignore[misc]
        def connect(self) -> Any:
            with metrics.acquiring(sqlalchemy.exc.TimeoutError) as request:
                fairy = super().connect()
            metrics.checked_out(fairy._connection_record, request)
            return fairy

        def _do_return_conn(self, record: Any) -> None:
            metrics.returned(record)
            super()._do_return_conn(record)

    Metered.__name__ = Metered.__qualname__ = poolclass.__name__
    return Metered


def check_pool_arguments(engine_options: dict[str, Any]) -> None:
    """Refuse a pool argument of the wrong type or range, before SQLAlchemy uses it.

    Raises:
        ConfigError: naming the argument, its value and what it expects.
    """
    for name, (valid, expected) in POOL_ARGUMENTS.items():
        if name in engine_options and not valid(engine_options[name]):
            raise ConfigError(
                f"bad value for {name}: {engine_options[name]!r}; expected {expected}"
            )


def _failover_listener(connector: _EngineConnector) -> Any:
    """Mark failover-class errors as disconnects, so SQLAlchemy invalidates the whole pool.

    SQLAlchemy's own checks only see closed or broken connections; a read-only error
    (the old writer came back as a standby) would leave "healthy" connections to it.
    For an Aurora cluster, the next connection looks for the writer again.
    """
    from securedb.failover import RETRIED, failure_of

    engine_name = connector.config.engine or ""

    def on_error(context: Any) -> None:
        if failure_of(context.original_exception, engine_name) in RETRIED:
            context.is_disconnect = True
            connector.failed_over()

    return on_error
