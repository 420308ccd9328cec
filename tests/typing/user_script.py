"""A user's script: every public entry point as the docs show it, checked by mypy --strict.

Never run, only type-checked (tests/test_typing.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

import securedb
from securedb import errors

URL = "postgresql://app_user@mydb.abc123.eu-west-2.rds.amazonaws.com:5432/app"


def transfer(conn: sa.Connection) -> int:
    conn.execute(sa.text("UPDATE accounts SET balance = balance - 1 WHERE id = 1"))
    return 1


async def transfer_async(conn: Any) -> int:
    await conn.execute("UPDATE accounts SET balance = balance - 1 WHERE id = 1")
    return 1


def synchronous() -> None:
    engine: sa.Engine = securedb.engine(URL, auth="iam", pool_size=5)
    with engine.connect() as conn:
        print(conn.execute(sa.text("SELECT current_user")).scalar())
    moved: int = securedb.run_transaction(engine, transfer, idempotent=True)
    pool = securedb.pool(URL, auth="iam", max_size=4)
    pool.invalidate()
    with pool.connection() as pooled:
        pooled.execute("SELECT 1")
    pool.close()
    print(moved, securedb.run_transaction(pool, lambda conn: conn.execute("SELECT 1").rowcount))
    raw = securedb.connect(URL, auth="iam", tunnel="127.0.0.1:5433")
    raw.close()
    pg = securedb.connect(URL, auth="iam", driver="psycopg")  # narrowed to psycopg's type
    print(pg.execute("SELECT 1").fetchone(), pg.info.server_version)
    pg.close()
    config: securedb.Config = securedb.Config.from_env()
    print(securedb.engine(config), config.is_local)


async def asynchronous() -> None:
    engine = securedb.async_engine(URL, auth="iam")
    async with engine.connect() as conn:
        print((await conn.execute(sa.text("SELECT 1"))).scalar())
    await engine.dispose()
    async with securedb.async_pool(URL, auth="iam") as pool:
        pool.invalidate()
        async with pool.connection() as pooled:
            await pooled.execute("SELECT 1")
        moved: int = await securedb.run_transaction_async(pool, transfer_async)
        print(moved)
    raw = await securedb.async_connect(URL, auth="iam")
    await raw.close()
    pg = await securedb.async_connect(URL, auth="iam", driver="psycopg")
    print(await (await pg.execute("SELECT 1")).fetchone())
    await pg.close()
    async with securedb.async_pool(URL, auth="iam", driver="asyncpg") as fast:
        await securedb.run_transaction_async(fast, transfer_async)


def main() -> None:
    try:
        synchronous()
        asyncio.run(asynchronous())
    except errors.TransactionOutcomeUnknown:
        print("the commit's outcome is unknown")
    except errors.SecureDBError as exc:
        print(exc)
