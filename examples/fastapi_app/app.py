"""A FastAPI app on securedb: async endpoints through `Database`, sync ones through `engine`.

Configure it as in production, with ``SECUREDB_URL``, ``SECUREDB_AUTH=iam`` (or
``SECUREDB_SECRET_ID``) and, from a laptop, ``SECUREDB_TUNNEL``; then run
``uvicorn examples.fastapi_app.app:app``. It needs a table::

    CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);

(No ``from __future__ import annotations`` here: FastAPI evaluates the endpoints'
annotations, and they name `db`, a local of `create_app`.)
"""

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

import securedb
from securedb.contrib.fastapi import Database


def create_app(config: securedb.Config | None = None) -> FastAPI:
    cfg = config or securedb.Config.from_env()
    db = Database(cfg)
    # asyncpg is async only: the `def` endpoints reach the same database through psycopg.
    sync_config = dataclasses.replace(cfg, driver=None) if cfg.driver == "asyncpg" else cfg
    engines: dict[str, sa.Engine] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.lifespan(app):
            engines["sync"] = securedb.engine(sync_config)  # for the `def` endpoints
            try:
                yield
            finally:
                engines.pop("sync").dispose()

    app = FastAPI(lifespan=lifespan)

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
