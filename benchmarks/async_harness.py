"""The harness's runs on an event loop, and what the async cases share.

A run stays a plain ``run(n) -> samples`` for `harness.interleave`: it drives one batch
on the case's event loop with `run_until_complete`, and the batch times itself inside
its coroutine, so starting and stopping the loop is left out of every sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from benchmarks import harness

Call = Callable[[], Awaitable[Any]]
Opener = Callable[[], contextlib.AbstractAsyncContextManager[Any]]
Op = Callable[[Any], Awaitable[Call]]


@contextlib.contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A new event loop, shut down cleanly after use.

    The AWS wrapper's failover plugin leaves a topology monitor task on the loop; its
    `release_resources_async` stops it.
    """
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        wrapper = sys.modules.get("aws_advanced_python_wrapper.aio")
        if wrapper is not None:
            loop.run_until_complete(wrapper.release_resources_async())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def fresh(loop: asyncio.AbstractEventLoop, open_: Opener, op: Op, warm: int = 20) -> harness.Run:
    """`harness.fresh` on `loop`: a timed batch of awaited calls on a resource made anew."""

    async def batch(n: int) -> list[float]:
        async with open_() as resource:
            call = await op(resource)
            for _ in range(warm):
                await call()
            started = time.perf_counter_ns()
            for _ in range(n):
                await call()
            return [(time.perf_counter_ns() - started) / n]

    return lambda n: loop.run_until_complete(batch(n))


def each(loop: asyncio.AbstractEventLoop, fn: Call) -> harness.Run:
    """`harness.each` on `loop`: every awaited call timed on its own."""

    async def batch(n: int) -> list[float]:
        samples = []
        for _ in range(n):
            started = time.perf_counter_ns()
            await fn()
            samples.append(float(time.perf_counter_ns() - started))
        return samples

    return lambda n: loop.run_until_complete(batch(n))


@contextlib.asynccontextmanager
async def engine(make: Callable[[], Any]) -> AsyncIterator[Any]:
    """An `AsyncEngine` from `make`, disposed of on exit."""
    eng = make()
    try:
        yield eng
    finally:
        await eng.dispose()


@contextlib.asynccontextmanager
async def pool(make: Callable[[], Any]) -> AsyncIterator[Any]:
    """An `AsyncConnectionPool` from `make`, opened and filled, closed on exit."""
    async with make() as p:
        await p.wait()
        yield p


@contextlib.asynccontextmanager
async def engine_connection(make: Callable[[], Any]) -> AsyncIterator[Any]:
    async with engine(make) as eng, eng.connect() as conn:
        yield conn


@contextlib.asynccontextmanager
async def pool_connection(make: Callable[[], Any]) -> AsyncIterator[Any]:
    async with pool(make) as p, p.connection() as conn:
        yield conn


@contextlib.asynccontextmanager
async def acquired(make: Callable[[], Any]) -> AsyncIterator[Any]:
    """A connection from an asyncpg `Pool` (made by `make`, started by `async with`)."""
    async with make() as p, p.acquire() as conn:
        yield conn


@contextlib.asynccontextmanager
async def connection(connect: Call) -> AsyncIterator[Any]:
    conn = await connect()
    try:
        yield conn
    finally:
        await close(conn)


async def close(conn: Any) -> None:
    closing = conn.close()  # psycopg's and the wrapper's are coroutines, aiomysql's is not
    if inspect.isawaitable(closing):
        await closing


async def checkout(engine_or_pool: Any) -> Call:
    """`async with engine.connect(): pass`, or `pool.connection()` for a pool."""
    is_engine = hasattr(engine_or_pool, "dispose")
    enter = engine_or_pool.connect if is_engine else engine_or_pool.connection

    async def once() -> None:
        async with enter():
            pass

    return once


async def select_one(conn: Any) -> Call:
    """One `SELECT 1` and its row: on a driver cursor, asyncpg's `fetchval`, or
    SQLAlchemy's `exec_driver_sql`."""
    if hasattr(conn, "exec_driver_sql"):

        async def through_sqlalchemy() -> Any:
            return (await conn.exec_driver_sql("SELECT 1")).fetchone()

        return through_sqlalchemy
    if hasattr(conn, "fetchval"):  # asyncpg: no cursor for a plain query

        async def fetchval() -> Any:
            return await conn.fetchval("SELECT 1")

        return fetchval
    cursor = conn.cursor()
    if inspect.isawaitable(cursor):  # aiomysql
        cursor = await cursor

    async def once() -> Any:
        await cursor.execute("SELECT 1")
        return await cursor.fetchone()

    return once


def probe(loop: asyncio.AbstractEventLoop, open_: Opener, op: Op) -> str | None:
    """None if one call of `op` on what `open_` gives works on `loop`, else why not."""

    async def once() -> None:
        async with open_() as resource:
            await (await op(resource))()

    try:
        loop.run_until_complete(once())
    except Exception as exc:
        return harness.failure(exc)
    return None
