"""FastAPI through securedb.contrib.fastapi.Database, on the bed, with IAM tokens."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bed import postgres
from bed.bed import Bed
from examples.fastapi_app.app import create_app
from securedb import _state
from securedb.config import Config
from securedb.contrib.fastapi import Database
from securedb.credentials import identity

pytestmark = pytest.mark.bed


@pytest.fixture
def notes(bed: Bed) -> None:
    bed.primary.psql(
        "DROP TABLE IF EXISTS notes; CREATE TABLE notes (id serial PRIMARY KEY, body text);"
        f"GRANT ALL ON notes, notes_id_seq TO {postgres.IAM_USER}",
        database="app",
    )


def config(bed: Bed, scheme: str = "postgresql") -> Config:
    return Config.from_url(
        f"{scheme}://{postgres.IAM_USER}@localhost:{bed.primary.port}/app",
        auth="iam",
        ca_bundle=str(bed.pki.ca),
    )


@pytest.mark.usefixtures("notes")
@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+asyncpg"])
def test_200_concurrent_requests(
    bed: Bed, aws_env: dict[str, str], scheme: str, request: pytest.FixtureRequest
) -> None:
    cfg = config(bed, scheme)
    app = create_app(cfg)
    drivers: set[str] = set()

    def record(dbapi_conn: Any, _: Any) -> None:
        conn = getattr(dbapi_conn, "driver_connection", dbapi_conn)
        drivers.add(type(conn).__module__.split(".")[0])

    sa.event.listen(sa.pool.Pool, "connect", record)
    request.addfinalizer(lambda: sa.event.remove(sa.pool.Pool, "connect", record))
    before = set(threading.enumerate())

    async def main() -> tuple[list[int], list[int], int, int]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://app"
            ) as client,
        ):
            posts = [client.post("/notes", params={"body": f"n{i}"}) for i in range(150)]
            reads = [client.get("/notes/count") for _ in range(25)]
            sync_reads = [client.get("/sync/notes/count") for _ in range(25)]
            answers = await asyncio.gather(*posts, *reads, *sync_reads)
            rejected = await client.post("/notes/rejected", params={"body": "never"})
            count = (await client.get("/notes/count")).json()
            sync_count = (await client.get("/sync/notes/count")).json()
        statuses = [a.status_code for a in answers]
        return statuses, [rejected.status_code], count, sync_count

    statuses, rejected, count, sync_count = asyncio.run(main())
    assert statuses == [200] * 200
    # The async endpoints ran on the spelled driver, the `def` ones on psycopg.
    assert drivers == ({"asyncpg", "psycopg"} if "asyncpg" in scheme else {"psycopg"})
    assert rejected == [422]
    assert count == sync_count == 150  # every insert committed, the rejected one rolled back
    assert identity(cfg) not in _state.registry.entries  # shutdown released the cache
    left = [t for t in set(threading.enumerate()) - before if t.name.startswith("securedb")]
    for thread in left:
        thread.join(5)
    assert [t for t in left if t.is_alive()] == []


def test_engine_before_startup_says_what_to_do(bed: Bed) -> None:
    db = Database(config(bed))
    with pytest.raises(Exception, match=r"lifespan=db\.lifespan"):
        db.engine  # noqa: B018


@pytest.mark.usefixtures("notes")
def test_own_lifespan_can_enter_the_database(bed: Bed, aws_env: dict[str, str]) -> None:
    db = Database(config(bed))

    async def main() -> Any:
        async with db.lifespan(None), contextlib.asynccontextmanager(db.session)() as session:
            return (await session.execute(sa.text("SELECT 1"))).scalar()

    assert asyncio.run(main()) == 1
