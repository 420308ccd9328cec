"""The connect path every entry point shares: credential, driver, one retry on refusal.

``Connector.connect()`` reads as its steps: take the cached credential, open the
driver's own connection with verify-full TLS, and if the database refuses the credential
(a rotated password, an expired token) fetch it once more and retry once. Failures leave
as `securedb.errors` classes that say what to do, or as a clean copy of the driver's own
error (`securedb._translate`), and none of them can lead to a secret: no chained cause or
context, no driver connection attribute, no frame that holds a credential.

Credential caches are shared through one registry keyed by credential identity
(`securedb._state`): every `Connector` (of `connect`, `engine`, `pool`, Django, Lambda)
holds a reference until it is closed, and the last one released stops the refresher.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Hashable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from securedb import _extras, _log, _otel, _routing, _state, drivers, topology
from securedb._translate import detached, translate
from securedb.config import Config, split_options
from securedb.credentials import RefreshAheadCache, cache_for, identity
from securedb.credentials.base import Credential
from securedb.drivers import Driver, Failure
from securedb.errors import ClosedError, ConfigError, SecureDBError
from securedb.topology import Missed, Outcome, Reached, Topology, Visit

if TYPE_CHECKING:
    from typing import TypeAlias

    import psycopg
    import pymysql.connections

    # What connect() returns, by engine; async_connect() returns psycopg's, asyncpg's or
    # aiomysql's (neither of the last two ships type information).
    Connection: TypeAlias = psycopg.Connection[Any] | pymysql.connections.Connection[Any]
    AsyncConnection: TypeAlias = psycopg.AsyncConnection[Any] | Any

__all__ = ["Connector", "async_connect", "connect"]

logger = _log.get("connect")


class Connector:
    """Opens connections for one `Config`, with the shared credential cache of its identity.

    Close it when done, or use it as a context manager: `close()` releases its credential
    caches (the last release stops their refresher), and it is final. A connector
    collected unclosed is released all the same, with a ``ResourceWarning`` unless it is
    `owned` by an engine, a pool or a Django connection, which may be dropped unclosed as
    SQLAlchemy's engines may (a pool warns by itself).
    """

    def __init__(self, cfg: Config, *, owned: bool = False) -> None:
        drivers.check_config(cfg)
        self._cfg = cfg
        self._resolved = cfg if cfg.engine and cfg.host else None
        self._by_dbname: dict[str, Config] = {}
        self._by_host: dict[tuple[str | None, str], Config] = {}
        self._topology: Topology | None = None
        self._failed_over_at: float | None = None  # until the next connection succeeds
        self._lock = threading.Lock()
        # Per event loop and cache, the credential fetch running in a thread.
        self._fetches: dict[tuple[asyncio.AbstractEventLoop, RefreshAheadCache], Any] = {}
        self._cache = _acquire(cfg)
        self._held: dict[Hashable, RefreshAheadCache] = {identity(cfg): self._cache}
        self._finalizer = weakref.finalize(
            self, _release_all if owned else _collected, self._held, repr(self)
        )
        self._finalizer.atexit = False  # connect()'s connectors live as long as the process
        _state.track(self)

    def __enter__(self) -> Connector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Release the credential caches; the last release stops their refresher."""
        with self._lock:  # not while `_cache_for` adds an Aurora instance's cache
            if self._finalizer.detach() is not None:
                _release_all(self._held)

    def after_fork(self) -> None:
        """A lock held by another thread at fork would never be released in the child,
        nor a fetch running in the parent's loop end in it."""
        self._lock = threading.Lock()
        self._fetches = {}

    @property
    def cache(self) -> RefreshAheadCache:
        if self.closed:
            raise self._closed_error()
        return self._cache

    def _closed_error(self) -> ClosedError:
        return ClosedError(
            f"{self!r} is closed: make a new engine, pool or connector",
            host=self._cfg.host,
            port=self._cfg.port,
        )

    def _cache_for(self, cfg: Config) -> RefreshAheadCache:
        """The credential cache for `cfg`: the connector's own, or for an Aurora instance
        (another host) the one of its identity, since a token is signed for one host."""
        if cfg.host == (self._resolved or self._cfg).host:
            return self.cache
        key = identity(cfg)
        with self._lock:
            if self.closed:
                raise self._closed_error()
            if key not in self._held:
                self._held[key] = _acquire(cfg)
            return self._held[key]

    @property
    def config(self) -> Config:
        """The configuration with the endpoint filled in (from an RDS secret if need be).

        Raises:
            CredentialsError: the secret that must name the endpoint could not be read.
        """
        if self._resolved is not None:
            return self._resolved
        try:
            cred = self.cache.get()
        except SecureDBError as exc:
            error = detached(exc)
        else:
            return self._resolve(cred)
        raise error  # outside the except block: no context to follow

    def _resolve(self, cred: Credential) -> Config:
        with self._lock:
            if self._resolved is None:
                resolved = self._cfg.with_secret_fields({**cred.fields, "username": cred.user})
                drivers.check_config(resolved)  # the secret named the endpoint
                self._resolved = resolved
            return self._resolved

    def connect(self, dbname: str | None = None, **args: Any) -> Any:
        """A new driver connection, verified TLS, credentials retried once if refused.

        `dbname` and `args` (driver keyword arguments) are this connection's own; they
        go through the adapter's merge point like ``connect_args``.
        """
        outcome = self._open(dbname, args)
        if isinstance(outcome, BaseException):
            try:
                raise outcome  # here, outside any except block: no __context__ to follow
            finally:
                del outcome  # no cycle through this frame: the connector goes when unused
        return outcome

    async def connect_async(self, dbname: str | None = None, **args: Any) -> Any:
        """`connect`'s twin: the driver's async connection; credential work off the loop."""
        outcome = await self._open_async(dbname, args)
        if isinstance(outcome, BaseException):
            try:
                raise outcome
            finally:
                del outcome
        return outcome

    def _open(self, dbname: str | None, args: Mapping[str, Any]) -> Any:
        """A connection, or the clean error to raise."""
        try:
            cfg = self._for_dbname(self.config, dbname)
        except SecureDBError as exc:
            return detached(exc)
        driver = drivers.load(cfg.engine or "", cfg.driver)
        absent = _extras.missing("securedb.connect()", _extras.driver_modules(cfg.engine, False))
        if absent is not None:
            return absent
        cluster = self._topology_of(cfg)
        if cluster is None:
            return self._reach(driver, cfg, args)
        return _routing.run(
            self._plan(cfg, cluster), lambda visit: self._visit(driver, cfg, args, visit)
        )

    def _reach(self, driver: Driver, cfg: Config, args: Mapping[str, Any]) -> Any:
        """A connection to `cfg`'s host, or the clean error to raise."""
        outcome = self._attempt(driver, cfg, args, retry=True)
        if outcome is _RETRY:
            outcome = self._attempt(driver, cfg, args, retry=False)
        return outcome

    def _visit(self, driver: Driver, cfg: Config, args: Mapping[str, Any], visit: Visit) -> Outcome:
        target = self._for_host(cfg, visit.host)
        conn = self._reach(driver, target, args)
        if isinstance(conn, BaseException):
            return Missed(conn, driver.classify(conn) is Failure.FAILOVER)
        if not visit.read:
            return Reached(conn, None)
        try:
            answer = driver.read_topology(conn)
        except Exception as exc:
            _routing.close_quietly(conn)
            return _routing.unread(exc, driver, target)
        assert self._topology is not None
        return _routing.answered(self._topology, answer, visit.host, conn)

    async def _open_async(self, dbname: str | None, args: Mapping[str, Any]) -> Any:
        try:
            cfg = self._for_dbname(self._resolved or await self._config_async(), dbname)
        except SecureDBError as exc:
            return detached(exc)
        driver = drivers.load(cfg.engine or "", cfg.driver)
        modules = _extras.driver_modules(cfg.engine, True, cfg.driver)
        if any(sys.modules.get(name) is None for name in modules):
            # the first import of a driver takes hundreds of ms: not on the loop
            absent = await asyncio.to_thread(_extras.missing, "securedb.async_connect()", modules)
            if absent is not None:
                return absent
        cluster = self._topology_of(cfg)
        if cluster is None:
            return await self._reach_async(driver, cfg, args)
        return await _routing.run_async(
            self._plan(cfg, cluster), lambda visit: self._visit_async(driver, cfg, args, visit)
        )

    async def _reach_async(self, driver: Driver, cfg: Config, args: Mapping[str, Any]) -> Any:
        outcome = await self._attempt_async(driver, cfg, args, retry=True)
        if outcome is _RETRY:
            outcome = await self._attempt_async(driver, cfg, args, retry=False)
        return outcome

    async def _visit_async(
        self, driver: Driver, cfg: Config, args: Mapping[str, Any], visit: Visit
    ) -> Outcome:
        target = self._for_host(cfg, visit.host)
        conn = await self._reach_async(driver, target, args)
        if isinstance(conn, BaseException):
            return Missed(conn, driver.classify(conn) is Failure.FAILOVER)
        if not visit.read:
            return Reached(conn, None)
        try:
            answer = await driver.read_topology_async(conn)
        except Exception as exc:
            await _routing.close_quietly_async(conn)
            return _routing.unread(exc, driver, target)
        assert self._topology is not None
        return _routing.answered(self._topology, answer, visit.host, conn)

    def _topology_of(self, cfg: Config) -> Topology | None:
        """The shared topology of `cfg`'s Aurora cluster, if its connections are routed."""
        if self._topology is None:
            cluster = cfg.cluster
            if cluster is None:
                return None
            self._topology = topology.shared(cfg.engine or "", cluster)
        return None if self._topology.dns_only else self._topology

    def _plan(self, cfg: Config, cluster: Topology) -> topology.Plan:
        host = cfg.host or ""
        if cfg.wants_reader:
            return topology.reader_plan(
                cluster, host, cfg.max_lag, cfg.reader_fallback, cfg.connect_timeout
            )
        return topology.writer_plan(cluster, host, cfg.connect_timeout)

    def _for_host(self, cfg: Config, host: str) -> Config:
        """`cfg` for one instance of its cluster: TLS verifies, and a token signs, that name."""
        if host == cfg.host:
            return cfg
        key = (cfg.dbname, host)
        if key not in self._by_host:
            # An instance endpoint is not routed: the role was the cluster endpoint's.
            self._by_host[key] = dataclasses.replace(cfg, host=host, role=None)
        return self._by_host[key]

    def failed_over(self) -> None:
        """A failover-class error was seen on a connection: for an Aurora cluster, the
        next connection looks for the writer again."""
        if self._failed_over_at is None:
            self._failed_over_at = time.monotonic()
            _otel.failover_detected(self._resolved or self._cfg)
        if self._topology is not None and not self._topology.dns_only:
            self._topology.failed_over()

    def _connected(self, cfg: Config, started: int, credential_at: int) -> None:
        _otel.connected(cfg, started, credential_at, None)
        failed_over_at, self._failed_over_at = self._failed_over_at, None
        if failed_over_at is not None:
            _otel.recovered(cfg, time.monotonic() - failed_over_at)

    def _attempt(self, driver: Driver, cfg: Config, args: Mapping[str, Any], retry: bool) -> Any:
        """A connection, `_RETRY` after a first refusal, or the clean error to raise."""
        started = time.time_ns()
        try:
            cache = self._cache_for(cfg)
            cred = cache.get()
        except SecureDBError as exc:
            return detached(exc)
        credential_at = time.time_ns()
        try:
            conn = driver.connect(cfg, cred, args)
        except Exception as exc:
            _otel.connected(cfg, started, credential_at, exc)
            return self._refused(driver, cfg, cache, cred, exc, retry)
        self._connected(cfg, started, credential_at)
        return conn

    async def _attempt_async(
        self, driver: Driver, cfg: Config, args: Mapping[str, Any], retry: bool
    ) -> Any:
        started = time.time_ns()
        try:
            cache = self._cache_for(cfg)
            cred = await self._credential_async(cache)
        except SecureDBError as exc:
            return detached(exc)
        credential_at = time.time_ns()
        try:
            conn = await driver.connect_async(cfg, cred, args)
        except Exception as exc:
            _otel.connected(cfg, started, credential_at, exc)
            return self._refused(driver, cfg, cache, cred, exc, retry)
        self._connected(cfg, started, credential_at)
        return conn

    @staticmethod
    def _refused(
        driver: Driver,
        cfg: Config,
        cache: RefreshAheadCache,
        cred: Credential,
        exc: Exception,
        retry: bool,
    ) -> Any:
        """`_RETRY` for a first refusal of a managed credential, else the error to raise."""
        failure = driver.classify(exc)
        if failure is Failure.AUTH:
            _otel.refused(cfg)
        managed = cfg.auth != "password"
        if failure is Failure.AUTH and retry and managed and cache.invalidate(cred):
            logger.info(
                "%s refused %s (version %s); refreshing once",
                cfg.endpoint,
                cache.source.name,
                cred.version,
            )
            return _RETRY
        return translate(exc, failure, cfg, cred.password)

    async def credential_async(self) -> Credential:
        """The cached credential inline; a fetch (and botocore's import) in a thread.

        Tasks and threads share the cache's single in-flight fetch.
        """
        return await self._credential_async(self.cache)

    async def _credential_async(self, cache: RefreshAheadCache) -> Credential:
        """The cached credential inline, else the one fetch in a thread that this loop's
        tasks share: one executor thread per cache, not one per waiting task (the loop's
        default executor keeps every thread it starts)."""
        value = cache.get_cached()
        if value is not None:
            return value
        key = (asyncio.get_running_loop(), cache)
        with self._lock:
            fetch = self._fetches.get(key)
            if fetch is None:
                fetch = self._fetches[key] = asyncio.ensure_future(asyncio.to_thread(cache.get))
                fetch.add_done_callback(functools.partial(self._fetched, key))
        return await asyncio.shield(fetch)  # a cancelled waiter leaves the fetch to the others

    def _fetched(
        self, key: tuple[asyncio.AbstractEventLoop, RefreshAheadCache], fetch: Any
    ) -> None:
        with self._lock:
            if self._fetches.get(key) is fetch:
                del self._fetches[key]
        if not fetch.cancelled():
            fetch.exception()  # retrieved, even if every waiter was cancelled

    async def _config_async(self) -> Config:
        return self._resolve(await self.credential_async())

    def _for_dbname(self, cfg: Config, dbname: str | None) -> Config:
        if dbname is None or dbname == cfg.dbname:
            return cfg
        if dbname not in self._by_dbname:
            self._by_dbname[dbname] = dataclasses.replace(cfg, dbname=dbname)
        return self._by_dbname[dbname]

    def __repr__(self) -> str:
        return f"<Connector {self._cfg.endpoint} auth={self._cfg.auth}>"


_RETRY = object()


def _acquire(cfg: Config) -> RefreshAheadCache:
    return _state.registry.acquire(identity(cfg), lambda: cache_for(cfg))


def _release_all(held: dict[Hashable, RefreshAheadCache], name: str = "") -> None:
    for key, cache in held.items():
        _state.registry.release(key, cache)
    held.clear()


def _collected(held: dict[Hashable, RefreshAheadCache], name: str) -> None:
    """The safety net: a connector collected unclosed is released, and says so."""
    _release_all(held)
    warnings.warn(  # noqa: B028  (the garbage collector calls this: no caller to point at)
        f"{name} was never closed: dispose() its engine, close() its pool, or use the "
        "connector in a `with` block",
        ResourceWarning,
    )


def _memoized(url: str | Config | None, options: dict[str, Any]) -> Connector:
    """`connect()`'s connector for these arguments: a repeated call skips parsing
    altogether, and equal Configs are one key."""

    def make() -> Connector:
        cfg, unknown = split_options(url, options)
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(sorted(unknown))}; "
                "pass driver arguments in connect_args="
            )
        return Connector(cfg)

    return _state.memo.get((url, repr(sorted(options.items()))), make)


@overload
async def async_connect(
    url: str | Config | None = None, *, driver: Literal["psycopg"], **options: Any
) -> psycopg.AsyncConnection[Any]: ...
@overload
async def async_connect(url: str | Config | None = None, **options: Any) -> AsyncConnection: ...
async def async_connect(url: str | Config | None = None, **options: Any) -> AsyncConnection:
    """`connect`'s async twin: psycopg's ``AsyncConnection``, an asyncpg ``Connection``
    (``postgresql+asyncpg://``) or an aiomysql connection.

    A cached credential is used inline; fetching one (a secret, AWS credentials from
    IMDS, the container endpoint or STS, and the first import of botocore) runs in a
    thread, so the event loop never waits on it.

    It raises the same errors as `connect`.
    """
    return await _memoized(url, options).connect_async()


@overload
def connect(
    url: str | Config | None = None, *, driver: Literal["psycopg"], **options: Any
) -> psycopg.Connection[Any]: ...
@overload
def connect(
    url: str | Config | None = None, *, driver: Literal["pymysql"], **options: Any
) -> pymysql.connections.Connection[Any]: ...
@overload
def connect(url: str | Config | None = None, **options: Any) -> Connection: ...
def connect(url: str | Config | None = None, **options: Any) -> Connection:
    """The driver's own connection (psycopg or PyMySQL), verify-full TLS, managed credentials.

    Its type is the union of both; ``driver="psycopg"`` (or ``"pymysql"``) narrows it for a
    type checker.

    Calls for the same credential identity share one credential cache, so a token or
    secret is not fetched again for every call.

    Raises:
        ConfigError: an option is invalid.
        CredentialsError: no AWS credentials, or the secret cannot be read or parsed.
        TLSError: the server's certificate is not trusted or does not name the host.
        AuthenticationError: the database refused the credentials after one refresh.
        ImportError: the driver is not installed; the message names the extra
            (``pip install 'securedb[postgresql]'``).
    """
    conn: Connection = _memoized(url, options).connect()
    return conn
