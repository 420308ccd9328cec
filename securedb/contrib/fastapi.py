"""FastAPI: an async engine made at startup, connections and sessions as dependencies.

::

    from fastapi import Depends, FastAPI
    from sqlalchemy.ext.asyncio import AsyncConnection

    from securedb.contrib.fastapi import Database

    db = Database("postgresql://app@mydb.abc123.eu-west-2.rds.amazonaws.com/app", auth="iam")
    app = FastAPI(lifespan=db.lifespan)

    @app.get("/orders/count")
    async def count(conn: Annotated[AsyncConnection, Depends(db.connection)]) -> int:
        return (await conn.execute(sa.text("SELECT count(*) FROM orders"))).scalar_one()

The engine is `securedb.async_engine`'s: verify-full TLS, managed credentials (fetched
off the event loop), failover handling. Shutdown disposes it, which releases its
credential cache and stops securedb's refresher thread for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from securedb.config import Config
from securedb.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

__all__ = ["Database"]


class Database:
    """One database for a FastAPI app; takes `securedb.async_engine`'s arguments."""

    def __init__(self, url: str | Config | None = None, **options: Any) -> None:
        self._url, self._options = url, options
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The `AsyncEngine`, from startup to shutdown."""
        if self._engine is None:
            raise ConfigError(
                "the database is not started: pass FastAPI(lifespan=db.lifespan), or enter "
                "`async with db.lifespan(app):` from your own lifespan"
            )
        return self._engine

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Make the engine at startup (in a thread: a secret may name the engine), dispose it
        at shutdown."""
        from securedb.sqlalchemy import async_engine

        self._engine = await asyncio.to_thread(async_engine, self._url, **self._options)
        try:
            yield
        finally:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A dependency: a connection in a transaction, committed if the request succeeds
        and rolled back if it raises."""
        async with self.engine.begin() as conn:
            yield conn

    async def session(self) -> AsyncIterator[AsyncSession]:
        """A dependency: an `AsyncSession` in a transaction, committed or rolled back the same
        way; objects stay readable after the commit."""
        from sqlalchemy.ext.asyncio import AsyncSession

        async with AsyncSession(self.engine, expire_on_commit=False) as session, session.begin():
            yield session
