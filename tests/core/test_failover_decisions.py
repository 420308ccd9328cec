"""Failover's decisions without I/O: what each driver error is, and when to retry or stop.

Driver errors are built the way the drivers raise them (test_failover.py gets each
entry from a real server). `run_transaction` is driven through a stand-in pool whose
connections fail on cue; waits are recorded, not slept.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from typing import Any

import psycopg
import pymysql
import pytest

from securedb import errors, failover
from securedb.drivers import Failure, mysql, postgres
from securedb.failover import RetryDetails, _Retries, backoff, failure_of, run_transaction

# --- classify: PostgreSQL -----------------------------------------------------------------


def pg_error(sqlstate: str | None, message: str = "boom") -> psycopg.Error:
    if sqlstate is None:
        return psycopg.OperationalError(message)
    return psycopg.errors.lookup(sqlstate)(message)


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (pg_error("28P01"), Failure.AUTH),
        (pg_error("28000"), Failure.AUTH),
        (pg_error(None, 'FATAL:  password authentication failed for user "x"'), Failure.AUTH),
        (pg_error(None, 'FATAL:  PAM authentication failed for user "x"'), Failure.AUTH),
        (pg_error(None, "authentication failed for user x"), Failure.AUTH),
        (pg_error("25006"), Failure.READ_ONLY),
        (pg_error("57P01"), Failure.FAILOVER),
        (pg_error("57P02"), Failure.FAILOVER),
        (pg_error("57P03"), Failure.FAILOVER),
        (pg_error("08006"), Failure.FAILOVER),
        (pg_error("08001"), Failure.FAILOVER),
        (pg_error(None, "SSL error: certificate verify failed"), Failure.TLS),
        (pg_error(None, 'server certificate for "x" does not match host name "y"'), Failure.TLS),
        (pg_error(None, "server does not support SSL, but SSL was required"), Failure.TLS),
        (pg_error(None, 'root certificate file "/x" does not exist'), Failure.TLS),
        (pg_error(None, "SSL error: tlsv1 alert unknown ca"), Failure.TLS),
        (pg_error(None, "SSL error: sslv3 alert handshake failure"), Failure.TLS),
        (pg_error(None, "SSL error: wrong version number"), Failure.TLS),
        (pg_error(None, "SSL error: unsupported protocol"), Failure.TLS),
        (pg_error(None, "SSL SYSCALL error: EOF detected: unexpected eof"), Failure.FAILOVER),
        (pg_error(None, "connection to server failed: Connection refused"), Failure.FAILOVER),
        (pg_error(None, "server closed the connection unexpectedly"), Failure.FAILOVER),
        (pg_error(None, "could not connect to server"), Failure.FAILOVER),
        (pg_error(None, "could not translate host name"), Failure.FAILOVER),
        (pg_error(None, "the database system is shutting down"), Failure.FAILOVER),
        (pg_error(None, "something else entirely"), None),
        (pg_error("42P01"), None),
        (pg_error("23505", "certificate verify failed"), None),
        (psycopg.ProgrammingError("certificate verify failed"), None),
        (psycopg.InterfaceError("the connection is closed"), None),
        (ValueError("server closed the connection"), None),
    ],
    ids=lambda v: v.name if isinstance(v, Failure) else None,
)
def test_postgres_classify(exc: BaseException, failure: Failure | None) -> None:
    assert postgres.classify(exc) is failure


def test_postgres_auth_sqlstate_wins_over_the_message() -> None:
    assert postgres.classify(pg_error("28P01", "server closed the connection")) is Failure.AUTH
    assert postgres.classify(pg_error("25006", "server closed the connection")) is (
        Failure.READ_ONLY
    )


# --- classify: MySQL ----------------------------------------------------------------------


def my_error(errno: int, cause: BaseException | None = None, *, original: bool = True) -> Any:
    exc = pymysql.err.OperationalError(errno, "boom")
    if cause is not None and original:
        exc.original_exception = cause  # type: ignore[attr-defined]  # PyMySQL's way
    elif cause is not None:
        exc.__cause__ = cause  # aiomysql's way
    return exc


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (pymysql.err.InterfaceError(0, ""), Failure.FAILOVER),
        (pymysql.err.InterfaceError(), Failure.FAILOVER),
        (pymysql.err.InterfaceError(2013, "x"), Failure.FAILOVER),
        (pymysql.err.InterfaceError(7, "x"), None),
        (my_error(1045), Failure.AUTH),
        (my_error(2026), Failure.TLS),
        (my_error(2003, ssl.SSLCertVerificationError("bad")), Failure.TLS),
        (my_error(2003, ssl.SSLError("bad"), original=False), Failure.TLS),
        (my_error(2003, OSError("refused")), Failure.FAILOVER),
        (my_error(2003), Failure.FAILOVER),
        (my_error(1290), Failure.READ_ONLY),
        (my_error(1836), Failure.READ_ONLY),
        *((my_error(n), Failure.FAILOVER) for n in (1053, 1927, 2002, 2006, 2013, 2055)),
        (my_error(1146), None),
        (my_error(1146, ssl.SSLError("x")), Failure.TLS),
        (pymysql.err.MySQLError(), None),
        (ValueError(2013), None),
    ],
    ids=lambda v: v.name if isinstance(v, Failure) else None,
)
def test_mysql_classify(exc: BaseException, failure: Failure | None) -> None:
    assert mysql.classify(exc) is failure


def test_failure_of_looks_through_sqlalchemys_wrapper() -> None:
    class Wrapped(Exception):
        orig = my_error(1290)

    assert failure_of(Wrapped(), "mysql") is Failure.READ_ONLY
    assert failure_of(pg_error("57P01"), "postgresql") is Failure.FAILOVER
    assert failure_of(my_error(1045), "mysql") is Failure.AUTH


# --- backoff and _Retries ------------------------------------------------------------------


@pytest.fixture
def upper(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """random.uniform returns its upper bound; the bounds asked for are recorded."""
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    monkeypatch.setattr(failover.random, "uniform", uniform)
    return asked


def test_backoff_is_full_jitter_capped(upper: list[tuple[float, float]]) -> None:
    assert [backoff(n) for n in (1, 2, 3, 5, 6, 10)] == pytest.approx(
        [0.1, 0.2, 0.4, 1.6, 3.0, 3.0]
    )
    assert backoff(3, initial=1.0, maximum=10.0) == 4.0
    assert backoff(5, initial=1.0, maximum=10.0) == 10.0
    assert all(low == 0 for low, _ in upper)


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(failover.time, "monotonic", made)
    return made


def test_retries_count_attempts_and_report_each(
    upper: list[tuple[float, float]], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[RetryDetails] = []
    retries = _Retries("op", False, 3, 30.0, seen.append)
    error = ConnectionError("lost")
    clock.now += 1.5
    with caplog.at_level(logging.WARNING, "securedb.failover"):
        assert retries.after(error, Failure.FAILOVER, False) == pytest.approx(0.1)
        assert retries.after(error, Failure.READ_ONLY, False) == pytest.approx(0.2)
    assert [dataclasses.astuple(r) for r in seen] == [
        ("op", 1, pytest.approx(0.1), 1.5, "FAILOVER", "ConnectionError"),
        ("op", 2, pytest.approx(0.2), 1.5, "READ_ONLY", "ConnectionError"),
    ]
    assert all(type(r) is RetryDetails for r in seen)
    assert [r.getMessage() for r in caplog.records] == [
        "op attempt 1 failed (FAILOVER, ConnectionError); retrying in 0.10 s",
        "op attempt 2 failed (READ_ONLY, ConnectionError); retrying in 0.20 s",
    ]
    with pytest.raises(errors.FailoverError) as caught:
        retries.after(error, Failure.FAILOVER, False)
    assert str(caught.value) == (
        "gave up after 3 attempts in 1.5 s: the connection to the server was lost or "
        "refused; the database did not come back within the deadline"
    )
    assert caught.value.__cause__ is error
    assert len(seen) == 2


def test_retries_without_a_hook(upper: list[tuple[float, float]], clock: Clock) -> None:
    assert _Retries("op", False, 2, 30.0, None).after(OSError(), Failure.FAILOVER, False) > 0


def test_retries_stop_at_the_deadline(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    monkeypatch.setattr(failover, "backoff", lambda attempt: 0.25)
    retries = _Retries("op", False, 10, 0.75, None)
    clock.now += 0.5  # waited 0.5 + the wait 0.25 = the deadline: still one more try
    assert retries.after(OSError(), Failure.FAILOVER, False) == 0.25
    clock.now += 0.125
    with pytest.raises(errors.FailoverError, match=r"gave up after 2 attempts in 0\.6 s"):
        retries.after(OSError(), Failure.FAILOVER, False)


def test_one_attempt_gives_up_at_once(upper: list[tuple[float, float]], clock: Clock) -> None:
    with pytest.raises(errors.FailoverError, match="gave up after 1 attempts"):
        _Retries("op", False, 1, 30.0, None).after(OSError(), Failure.FAILOVER, False)


@pytest.mark.parametrize("failure", [None, Failure.AUTH, Failure.TLS])
def test_other_failures_are_raised_as_they_are(failure: Failure | None, clock: Clock) -> None:
    error = LookupError("bad sql")
    retries = _Retries("op", True, 10, 30.0, None)
    with pytest.raises(LookupError) as caught:
        retries.after(error, failure, False)
    assert caught.value is error
    assert retries.attempt == 1


def test_lost_commit_is_unknown_unless_idempotent(
    upper: list[tuple[float, float]], clock: Clock
) -> None:
    error = ConnectionError("lost at COMMIT")
    with pytest.raises(errors.TransactionOutcomeUnknown) as caught:
        _Retries("op", False, 10, 30.0, None).after(error, Failure.FAILOVER, True)
    assert str(caught.value) == (
        "the connection was lost during COMMIT: the transaction may or may not have "
        "committed; check before re-running, or pass idempotent=True"
    )
    assert caught.value.__cause__ is error
    assert _Retries("op", True, 10, 30.0, None).after(error, Failure.FAILOVER, True) > 0
    assert _Retries("op", False, 10, 30.0, None).after(error, Failure.FAILOVER, False) > 0


# --- run_transaction through a stand-in pool -----------------------------------------------


class Conn:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.rolled_back = False

    def commit(self) -> None:
        self.pool.events.append("commit")
        if self.pool.commit_errors:
            raise self.pool.commit_errors.pop(0)

    def rollback(self) -> None:
        self.rolled_back = True
        self.pool.events.append("rollback")
        raise psycopg.OperationalError("the connection is lost")  # a broken connection


class Pool:
    """What run_transaction uses of a securedb pool."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.commit_errors: list[BaseException] = []

    def getconn(self) -> Conn:
        self.events.append("getconn")
        return Conn(self)

    def putconn(self, conn: Conn) -> None:
        self.events.append("putconn")

    def invalidate(self) -> None:
        self.events.append("invalidate")


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch, upper: Any, clock: Clock) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(failover.time, "sleep", waits.append)
    return waits


def test_failover_error_invalidates_the_pool_and_runs_again(slept: list[float]) -> None:
    pool, calls = Pool(), []

    def work(conn: Conn) -> str:
        calls.append(conn)
        if len(calls) == 1:
            raise pg_error(None, "server closed the connection unexpectedly")
        return "done"

    assert run_transaction(pool, work) == "done"
    assert pool.events == [
        "getconn",
        "rollback",
        "putconn",
        "invalidate",
        "getconn",
        "commit",
        "putconn",
    ]
    assert slept == [pytest.approx(0.1)]
    assert calls[0].rolled_back
    assert not calls[1].rolled_back


def test_other_errors_are_not_retried_and_do_not_invalidate(slept: list[float]) -> None:
    pool = Pool()

    def work(conn: Conn) -> None:
        raise pg_error("42P01", "no such table")

    with pytest.raises(psycopg.errors.UndefinedTable):
        run_transaction(pool, work)
    assert pool.events == ["getconn", "rollback", "putconn"]
    assert slept == []


def test_lost_commit(slept: list[float]) -> None:
    pool = Pool()
    pool.commit_errors = [pg_error(None, "server closed the connection unexpectedly")]
    with pytest.raises(errors.TransactionOutcomeUnknown):
        run_transaction(pool, lambda conn: 1)
    assert pool.events == ["getconn", "commit", "rollback", "putconn", "invalidate"]
    pool = Pool()
    pool.commit_errors = [pg_error(None, "server closed the connection unexpectedly")]
    assert run_transaction(pool, lambda conn: 2, idempotent=True) == 2
    assert pool.events.count("commit") == 2


def test_attempts_deadline_and_hook_are_passed_on(slept: list[float], clock: Clock) -> None:
    pool, seen = Pool(), []

    def work(conn: Conn) -> None:
        raise pg_error("57P01")

    with pytest.raises(errors.FailoverError, match="gave up after 2 attempts"):
        run_transaction(pool, work, attempts=2, on_retry=seen.append)
    assert pool.events.count("getconn") == 2
    assert [(r.operation, r.attempt, r.failure, r.error) for r in seen] == [
        ("run_transaction", 1, "FAILOVER", "AdminShutdown")
    ]
    pool = Pool()
    with pytest.raises(errors.FailoverError, match="gave up after 1 attempts"):
        run_transaction(pool, work, deadline=0.05)


def test_the_connection_taken_is_the_one_given_back(slept: list[float]) -> None:
    taken: list[Any] = []
    given: list[Any] = []

    class Tracking(Pool):
        def getconn(self) -> Conn:
            taken.append(super().getconn())
            return taken[-1]

        def putconn(self, conn: Conn) -> None:
            given.append(conn)

    assert run_transaction(Tracking(), lambda conn: 3) == 3
    assert given == taken
    assert len(given) == 1


class Engine:
    """What run_transaction uses of a SQLAlchemy Engine."""

    class dialect:
        name = "postgresql"

    def __init__(
        self, failures: list[BaseException], commit_failures: list[BaseException] | None = None
    ) -> None:
        self.failures = failures
        self.commit_failures = commit_failures or []
        self.commits = 0

    def connect(self) -> Any:
        engine = self

        class Connection:
            def __enter__(self) -> Connection:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def commit(self) -> None:
                engine.commits += 1
                if engine.commit_failures:
                    raise engine.commit_failures.pop(0)

        if self.failures:
            raise self.failures.pop(0)
        return Connection()


def test_an_engine_is_run_through_its_connections(slept: list[float]) -> None:
    engine = Engine([pg_error("57P01")])
    assert run_transaction(engine, lambda conn: type(conn).__name__) == "Connection"
    assert engine.commits == 1
    assert slept == [pytest.approx(0.1)]


def test_run_transaction_takes_engines_and_pools_only() -> None:
    with pytest.raises(TypeError) as caught:
        run_transaction(object(), lambda conn: None)
    assert str(caught.value) == (
        "run_transaction() takes an engine from securedb.engine() or a pool from "
        "securedb.pool(), not object"
    )

    class OnlyGetconn:
        def getconn(self) -> None: ...

    class OnlyDialect:
        dialect = "x"

    for target in (OnlyGetconn(), OnlyDialect()):
        with pytest.raises(TypeError):
            run_transaction(target, lambda conn: None)


def test_an_engines_lost_commit_is_unknown(slept: list[float]) -> None:
    lost = pg_error(None, "server closed the connection unexpectedly")
    with pytest.raises(errors.TransactionOutcomeUnknown) as caught:
        run_transaction(Engine([], [lost]), lambda conn: "ok")
    assert caught.value.__cause__ is lost
    engine = Engine([], [pg_error(None, "server closed the connection unexpectedly")])
    assert run_transaction(engine, lambda conn: "ok", idempotent=True) == "ok"
    assert engine.commits == 2


# --- run_transaction_async through stand-ins ------------------------------------------------


class AsyncConn:
    def __init__(self, pool: AsyncPool) -> None:
        self.pool = pool

    async def commit(self) -> None:
        self.pool.events.append("commit")
        if self.pool.commit_errors:
            raise self.pool.commit_errors.pop(0)

    async def rollback(self) -> None:
        self.pool.events.append("rollback")
        raise psycopg.OperationalError("the connection is lost")


class AsyncPool:
    """What run_transaction_async uses of a securedb async pool."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.commit_errors: list[BaseException] = []
        self.given: list[AsyncConn] = []

    async def getconn(self) -> AsyncConn:
        self.events.append("getconn")
        return AsyncConn(self)

    async def putconn(self, conn: AsyncConn) -> None:
        self.given.append(conn)
        self.events.append("putconn")

    def invalidate(self) -> None:
        self.events.append("invalidate")


class AsyncEngine:
    """What run_transaction_async uses of an AsyncEngine."""

    sync_engine = object()

    class dialect:
        name = "mysql"

    def __init__(self, failures: list[BaseException], commit_failures: list[BaseException]) -> None:
        self.failures, self.commit_failures, self.commits = failures, commit_failures, 0

    def connect(self) -> Any:
        engine = self

        class Connection:
            async def __aenter__(self) -> Connection:
                if engine.failures:
                    raise engine.failures.pop(0)
                return self

            async def __aexit__(self, *exc: object) -> None:
                pass

            async def commit(self) -> None:
                engine.commits += 1
                if engine.commit_failures:
                    raise engine.commit_failures.pop(0)

        return Connection()


@pytest.fixture
def async_slept(monkeypatch: pytest.MonkeyPatch, upper: Any, clock: Clock) -> list[float]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(failover.asyncio, "sleep", sleep)
    return waits


def run_async(target: Any, fn: Any, **options: Any) -> Any:
    import asyncio

    return asyncio.run(failover.run_transaction_async(target, fn, **options))


def test_async_pool_failover_invalidates_and_runs_again(async_slept: list[float]) -> None:
    pool, calls, seen = AsyncPool(), [], []

    async def work(conn: AsyncConn) -> str:
        calls.append(conn)
        if len(calls) == 1:
            raise pg_error(None, "server closed the connection unexpectedly")
        return "done"

    assert run_async(pool, work, on_retry=seen.append) == "done"
    assert pool.events == [
        "getconn",
        "rollback",
        "putconn",
        "invalidate",
        "getconn",
        "commit",
        "putconn",
    ]
    assert pool.given == calls
    assert async_slept == [pytest.approx(0.1)]
    assert [(r.operation, r.attempt, r.failure) for r in seen] == [
        ("run_transaction_async", 1, "FAILOVER")
    ]


def test_async_pool_other_errors_and_lost_commits(async_slept: list[float]) -> None:
    async def bad(conn: AsyncConn) -> None:
        raise pg_error("42P01", "no such table")

    pool = AsyncPool()
    with pytest.raises(psycopg.errors.UndefinedTable):
        run_async(pool, bad)
    assert pool.events == ["getconn", "rollback", "putconn"]

    async def one(conn: AsyncConn) -> int:
        return 1

    pool = AsyncPool()
    pool.commit_errors = [pg_error(None, "server closed the connection unexpectedly")]
    with pytest.raises(errors.TransactionOutcomeUnknown):
        run_async(pool, one)
    assert pool.events == ["getconn", "commit", "rollback", "putconn", "invalidate"]
    pool = AsyncPool()
    pool.commit_errors = [pg_error(None, "server closed the connection unexpectedly")]
    assert run_async(pool, one, idempotent=True) == 1

    async def lost(conn: AsyncConn) -> None:
        raise pg_error("57P01")

    with pytest.raises(errors.FailoverError, match="gave up after 2 attempts"):
        run_async(AsyncPool(), lost, attempts=2)
    with pytest.raises(errors.FailoverError, match="gave up after 1 attempts"):
        run_async(AsyncPool(), lost, deadline=0.05)


def test_async_engine_runs_through_its_connections(async_slept: list[float]) -> None:
    async def name(conn: Any) -> str:
        return type(conn).__name__

    engine = AsyncEngine([my_error(2013)], [])
    assert run_async(engine, name) == "Connection"
    assert engine.commits == 1
    assert async_slept == [pytest.approx(0.1)]
    lost = my_error(2013)
    with pytest.raises(errors.TransactionOutcomeUnknown) as caught:
        run_async(AsyncEngine([], [lost]), name)
    assert caught.value.__cause__ is lost


def test_run_transaction_async_takes_async_engines_and_pools_only() -> None:
    with pytest.raises(TypeError) as caught:
        run_async(object(), lambda conn: None)
    assert str(caught.value) == (
        "run_transaction_async() takes an engine from securedb.async_engine() or a pool "
        "from securedb.async_pool(), not object"
    )

    class OnlyGetconn:
        async def getconn(self) -> None: ...

    with pytest.raises(TypeError):
        run_async(OnlyGetconn(), lambda conn: None)
