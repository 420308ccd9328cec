"""A FastAPI app on securedb: async endpoints through `Database`, sync ones through `engine`.

Configure it as in production, with ``SECUREDB_URL``, ``SECUREDB_AUTH=iam`` (or
``SECUREDB_SECRET_ID``) and, from a laptop, ``SECUREDB_TUNNEL``; then run
``uvicorn examples.fastapi_app.app:app``. It needs a table::

    CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);

``READER_URL`` (and ``READER_TUNNEL``) name a reader endpoint, with the same credentials:
``GET /notes/latest`` reads there, and from the writer while the reader does not answer.
``POST /notes/retried`` is the write to use across a failover (`run_transaction_async`).
With ``APP_STATS=1``, ``GET /stats`` gives the worker's pid and credential fetches
(`examples.stats`).

(No ``from __future__ import annotations`` here: FastAPI evaluates the endpoints'
annotations, and they name `db`, a local of `create_app`.)
"""

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

import securedb
from examples import stats
from securedb.contrib.fastapi import Database
from securedb.errors import FailoverError, SecureDBError, TransactionOutcomeUnknown

logger = logging.getLogger(__name__)
READER_CONNECT_TIMEOUT = 2.0  # a reader that does not answer by then is skipped
READER_PAUSE = 5.0  # seconds the writer serves reads after the reader failed
LATEST = sa.text("SELECT coalesce(max(id), 0) FROM notes")


def reader_config() -> securedb.Config | None:
    """The reader endpoint of ``READER_URL`` (``READER_TUNNEL``), else None."""
    url = os.environ.get("READER_URL")
    if not url:
        return None
    where = {"SECUREDB_URL": url, "SECUREDB_TUNNEL": os.environ.get("READER_TUNNEL", "")}
    reader = securedb.Config.from_env({**os.environ, **where})
    return dataclasses.replace(reader, connect_timeout=READER_CONNECT_TIMEOUT)


def create_app(
    config: securedb.Config | None = None, reader: securedb.Config | None = None
) -> FastAPI:
    cfg = config or securedb.Config.from_env()
    reader = reader or (reader_config() if config is None else None)
    db = Database(cfg)
    # asyncpg is async only: the `def` endpoints reach the same database through psycopg.
    sync_config = dataclasses.replace(cfg, driver=None) if cfg.driver == "asyncpg" else cfg
    engines: dict[str, sa.Engine] = {}
    readers: dict[str, AsyncEngine] = {}
    reader_down_until = [0.0]
    if stats.enabled():
        stats.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.lifespan(app):
            engines["sync"] = securedb.engine(sync_config)  # for the `def` endpoints
            if reader is not None:
                readers["reader"] = await asyncio.to_thread(securedb.async_engine, reader)
            try:
                yield
            finally:
                engines.pop("sync").dispose()
                if reader is not None:
                    await readers.pop("reader").dispose()

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(TransactionOutcomeUnknown)
    @app.exception_handler(FailoverError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__}, status_code=503)

    @app.post("/notes")
    async def add_note(body: str, conn: Annotated[AsyncConnection, Depends(db.connection)]) -> int:
        query = sa.text("INSERT INTO notes (body) VALUES (:body) RETURNING id")
        return int((await conn.execute(query, {"body": body})).scalar_one())

    @app.post("/notes/rejected")
    async def add_rejected(
        body: str, conn: Annotated[AsyncConnection, Depends(db.connection)]
    ) -> None:
        await conn.execute(sa.text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})
        raise HTTPException(422, "rejected after the insert: the transaction is rolled back")

    @app.get("/notes/count")
    async def count_notes(session: Annotated[AsyncSession, Depends(db.session)]) -> int:
        return int((await session.execute(sa.text("SELECT count(*) FROM notes"))).scalar_one())

    @app.post("/notes/retried")
    async def add_note_retried(body: str) -> int:
        """Insert a note on the writer, again on the new writer after a failover; 503 when
        the COMMIT was lost (the note may or may not be saved) or no writer came back."""

        async def insert(conn: AsyncConnection) -> int:
            query = sa.text("INSERT INTO notes (body) VALUES (:body) RETURNING id")
            return int((await conn.execute(query, {"body": body})).scalar_one())

        return await securedb.run_transaction_async(db.engine, insert)

    @app.get("/notes/latest")
    async def latest_note() -> int:
        """The highest note id, from the reader; from the writer while the reader fails."""
        engine = readers.get("reader")
        if engine is not None and time.monotonic() >= reader_down_until[0]:
            try:
                async with engine.connect() as conn:
                    return int((await conn.execute(LATEST)).scalar_one())
            except (sa.exc.DBAPIError, SecureDBError, OSError) as exc:
                reader_down_until[0] = time.monotonic() + READER_PAUSE
                logger.warning("reader failed (%s); reading from the writer", type(exc).__name__)

        async def read(conn: AsyncConnection) -> int:
            return int((await conn.execute(LATEST)).scalar_one())

        return await securedb.run_transaction_async(db.engine, read, idempotent=True)

    @app.get("/stats")
    async def worker_stats() -> dict[str, Any]:
        """This worker's pid and securedb's credential fetches (`examples.stats`)."""
        return stats.snapshot()

    def sync_connection() -> Iterator[sa.Connection]:
        with engines["sync"].begin() as conn:
            yield conn

    @app.get("/sync/notes/count")
    def sync_count_notes(conn: Annotated[sa.Connection, Depends(sync_connection)]) -> int:
        return int(conn.execute(sa.text("SELECT count(*) FROM notes")).scalar_one())

    return app


def __getattr__(name: str) -> FastAPI:
    """``app`` for uvicorn, configured from the environment when first asked for."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
