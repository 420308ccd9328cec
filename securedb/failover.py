"""Failover: what the errors mean, and `run_transaction`, which re-runs work on a new writer.

When a Multi-AZ or Aurora writer fails over, its endpoint's DNS moves to the new writer,
connections to the old one die, and the old one may come back read-only. The drivers'
adapters classify errors (`securedb.drivers.Failure`); a FAILOVER or READ_ONLY error
invalidates the whole pool, so the next connection resolves DNS again and reaches the new
writer. `run_transaction` then re-runs the unit of work, with exponential backoff and full
jitter, inside a deadline. A connection lost during COMMIT leaves the outcome unknown: the
work is re-run only if it is marked idempotent.

The decisions (classification, `backoff`, when to give up) are plain functions, so an
async twin can share them and differ only in I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from securedb import _log, _otel, drivers
from securedb.drivers import Failure
from securedb.errors import FailoverError, TransactionOutcomeUnknown

if TYPE_CHECKING:
    from typing import TypeAlias

    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from securedb._asyncpg_pool import AsyncpgPool
    from securedb._pools import AsyncConnectionPool, ConnectionPool

    # What run_transaction() takes; `fn` gets the connection the target gives.
    Target: TypeAlias = Engine | ConnectionPool
    AsyncTarget: TypeAlias = AsyncEngine | AsyncConnectionPool | AsyncpgPool

__all__ = ["RetryDetails", "backoff", "failure_of", "run_transaction", "run_transaction_async"]

logger = _log.get("failover")

T = TypeVar("T")
RETRIED = frozenset({Failure.FAILOVER, Failure.READ_ONLY})
DEFAULT_ATTEMPTS = 10
DEFAULT_DEADLINE = 30.0
WAIT_INITIAL = 0.1
WAIT_MAX = 3.0


@dataclasses.dataclass(frozen=True, slots=True)
class RetryDetails:
    """What a metrics hook learns of each retry: never arguments or error text."""

    operation: str
    attempt: int
    wait: float
    waited_so_far: float
    failure: str
    error: str  # the exception's class name


RetryHook = Callable[[RetryDetails], None]


def backoff(attempt: int, initial: float = WAIT_INITIAL, maximum: float = WAIT_MAX) -> float:
    """Full jitter: uniform in [0, min(maximum, initial * 2**(attempt - 1))]."""
    return random.uniform(0, min(maximum, initial * 2 ** (attempt - 1)))  # noqa: S311


def failure_of(exc: BaseException, engine: str) -> Failure | None:
    """The kind of failure `exc` is for ``"postgresql"`` or ``"mysql"``.

    SQLAlchemy's wrappers are looked through to the driver's own error.
    """
    original = getattr(exc, "orig", None) or exc
    return drivers.classify(original, engine)


class _CommitFailed(Exception):
    """The COMMIT itself failed; its fate on the server is unknown."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


def run_transaction(
    target: Target,
    fn: Callable[[Any], T],
    *,
    idempotent: bool = False,
    attempts: int = DEFAULT_ATTEMPTS,
    deadline: float = DEFAULT_DEADLINE,
    on_retry: RetryHook | None = None,
) -> T:
    """Run ``fn(connection)`` in a transaction, and again on a fresh connection after failover.

    `target` is an `engine()` (``fn`` gets a SQLAlchemy ``Connection``) or a `pool()` (``fn``
    gets a psycopg connection). securedb commits explicitly after ``fn`` returns, so it
    knows whether COMMIT itself failed. Only failover-class errors are retried: a lost or
    refused connection, a server shutting down, a read-only server; everything else (SQL
    errors, authentication, TLS) is raised at once.

    Raises:
        TransactionOutcomeUnknown: the connection died during COMMIT and `idempotent` is
            False: the transaction may or may not have committed.
        FailoverError: `attempts` or `deadline` (seconds) ran out; the last error is chained.
    """
    runner = _runner(target)
    retries = _Retries("run_transaction", idempotent, attempts, deadline, on_retry)
    with _otel.transaction("run_transaction"):
        while True:
            try:
                return runner.run(fn)
            except _CommitFailed as failed:
                error, in_commit = failed.cause, True
            except Exception as exc:
                error, in_commit = exc, False
            failure = runner.failure(error)
            if failure in RETRIED:
                runner.invalidate()
            time.sleep(retries.after(error, failure, in_commit))


async def run_transaction_async(
    target: AsyncTarget,
    fn: Callable[[Any], Awaitable[T]],
    *,
    idempotent: bool = False,
    attempts: int = DEFAULT_ATTEMPTS,
    deadline: float = DEFAULT_DEADLINE,
    on_retry: RetryHook | None = None,
) -> T:
    """`run_transaction`'s async twin, making the same decisions.

    `target` is an `async_engine()` (``fn`` gets an ``AsyncConnection``) or an
    `async_pool()` (``fn`` gets a psycopg ``AsyncConnection``, or with asyncpg an
    ``asyncpg.Connection``); ``fn`` is awaited.

    Raises:
        TransactionOutcomeUnknown: as `run_transaction`.
        FailoverError: as `run_transaction`.
    """
    runner = _async_runner(target)
    retries = _Retries("run_transaction_async", idempotent, attempts, deadline, on_retry)
    with _otel.transaction("run_transaction_async"):
        while True:
            try:
                return await runner.run(fn)
            except _CommitFailed as failed:
                error, in_commit = failed.cause, True
            except Exception as exc:
                error, in_commit = exc, False
            failure = runner.failure(error)
            if failure in RETRIED:
                await runner.invalidate()
            await asyncio.sleep(retries.after(error, failure, in_commit))


class _Retries:
    """The decisions of `run_transaction` and its twin, without I/O.

    `after` is told of each failure and returns how long to wait before the next attempt,
    or raises: the error itself if it is not failover-class, `TransactionOutcomeUnknown`
    for a lost COMMIT of non-idempotent work, `FailoverError` when attempts or the
    deadline run out.
    """

    def __init__(
        self,
        operation: str,
        idempotent: bool,
        attempts: int,
        deadline: float,
        on_retry: RetryHook | None,
    ) -> None:
        self.operation, self.idempotent, self.on_retry = operation, idempotent, on_retry
        self.attempts, self.deadline = attempts, deadline
        self.attempt = 0
        self.started = time.monotonic()

    def after(self, error: BaseException, failure: Failure | None, in_commit: bool) -> float:
        self.attempt += 1
        if failure not in RETRIED:
            raise error
        assert failure is not None
        if in_commit and not self.idempotent:
            raise TransactionOutcomeUnknown(
                "the connection was lost during COMMIT: the transaction may or may not "
                "have committed; check before re-running, or pass idempotent=True",
            ) from error
        wait, waited = backoff(self.attempt), time.monotonic() - self.started
        if self.attempt >= self.attempts or waited + wait > self.deadline:
            raise FailoverError(
                f"gave up after {self.attempt} attempts in {waited:.1f} s: {failure.value}; "
                "the database did not come back within the deadline",
            ) from error
        logger.warning(
            "%s attempt %d failed (%s, %s); retrying in %.2f s",
            self.operation,
            self.attempt,
            failure.name,
            type(error).__name__,
            wait,
        )
        _otel.retried(self.operation, failure.name, self.attempt, wait)
        if self.on_retry is not None:
            self.on_retry(
                RetryDetails(
                    self.operation, self.attempt, wait, waited, failure.name, type(error).__name__
                )
            )
        return wait


class _EngineRunner:
    """A SQLAlchemy Engine: the pool is invalidated by securedb's ``handle_error`` listener."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.dialect.name

    def run(self, fn: Callable[[Any], T]) -> T:
        with self.engine.connect() as conn:
            result = fn(conn)
            try:
                conn.commit()
            except Exception as exc:
                raise _CommitFailed(exc) from exc
        return result

    def failure(self, exc: BaseException) -> Failure | None:
        return failure_of(exc, self.name)

    def invalidate(self) -> None:
        """Nothing more to do: the listener marked the error a disconnect (see engine())."""


class _PoolRunner:
    """A securedb psycopg pool: connections made before the failure are discarded."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def run(self, fn: Callable[[Any], T]) -> T:
        conn = self.pool.getconn()
        try:
            result = fn(conn)
            try:
                conn.commit()
            except Exception as exc:
                raise _CommitFailed(exc) from exc
        except BaseException:
            _quietly_rollback(conn)
            raise
        finally:
            self.pool.putconn(conn)
        return result

    def failure(self, exc: BaseException) -> Failure | None:
        return failure_of(exc, "postgresql")

    def invalidate(self) -> None:
        self.pool.invalidate()


class _AsyncEngineRunner:
    """An `async_engine()`: invalidated by the same listener, on its sync engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.dialect.name

    async def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async with self.engine.connect() as conn:
            result = await fn(conn)
            try:
                await conn.commit()
            except Exception as exc:
                raise _CommitFailed(exc) from exc
        return result

    def failure(self, exc: BaseException) -> Failure | None:
        return failure_of(exc, self.name)

    async def invalidate(self) -> None:
        """Nothing more to do: the listener marked the error a disconnect."""


class _AsyncPoolRunner:
    """A securedb psycopg async pool: connections made before the failure are discarded."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        conn = await self.pool.getconn()
        try:
            result = await fn(conn)
            try:
                await conn.commit()
            except Exception as exc:
                raise _CommitFailed(exc) from exc
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection: the pool discards it
                await conn.rollback()
            raise
        finally:
            await self.pool.putconn(conn)
        return result

    def failure(self, exc: BaseException) -> Failure | None:
        return failure_of(exc, "postgresql")

    async def invalidate(self) -> None:
        self.pool.invalidate()


class _AsyncpgPoolRunner(_AsyncPoolRunner):
    """A securedb asyncpg pool: asyncpg's transaction, connections replaced after failure."""

    async def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        conn = await self.pool.acquire()
        try:
            transaction = conn.transaction()
            await transaction.start()
            try:
                result = await fn(conn)
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection: it is replaced
                    await transaction.rollback()
                raise
            try:
                await transaction.commit()
            except Exception as exc:
                raise _CommitFailed(exc) from exc
        finally:
            # asyncpg resets a connection as it takes it back, and raises if that fails
            # (having dropped it): a connection lost just after COMMIT must not turn the
            # committed transaction into a failure that is retried, and written twice.
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
        return result

    async def invalidate(self) -> None:
        await self.pool.invalidate()


def _quietly_rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection: the pool discards it
        conn.rollback()


def _async_runner(target: Any) -> _AsyncEngineRunner | _AsyncPoolRunner:
    if hasattr(target, "sync_engine"):
        return _AsyncEngineRunner(target)
    if hasattr(target, "expire_connections") and hasattr(target, "invalidate"):
        return _AsyncpgPoolRunner(target)
    if hasattr(target, "getconn") and hasattr(target, "invalidate"):
        return _AsyncPoolRunner(target)
    raise TypeError(
        "run_transaction_async() takes an engine from securedb.async_engine() or a pool "
        f"from securedb.async_pool(), not {type(target).__name__}"
    )


def _runner(target: Any) -> _EngineRunner | _PoolRunner:
    if hasattr(target, "dialect") and hasattr(target, "connect"):
        return _EngineRunner(target)
    if hasattr(target, "getconn") and hasattr(target, "invalidate"):
        return _PoolRunner(target)
    raise TypeError(
        "run_transaction() takes an engine from securedb.engine() or a pool "
        f"from securedb.pool(), not {type(target).__name__}"
    )
