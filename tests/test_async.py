"""async_connect, async_engine, async_pool and run_transaction_async on the bed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import boto3
import psycopg
import pytest
import sqlalchemy as sa

import securedb
from bed import certs, mariadb, postgres
from bed.bed import Bed
from securedb import _state, errors
from securedb.config import Config
from securedb.credentials import identity
from tests import fakes

pytestmark = pytest.mark.bed


def iam_url(bed: Bed, engine: str) -> str:
    if engine == "postgresql":
        return f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"
    return f"mysql://{mariadb.IAM_USER}@127.0.0.1:{bed.mariadb.port}/app"


async def facts(conn: Any) -> tuple[str, bool]:
    """The user and whether TLS is on, from the server's side."""
    if isinstance(conn, psycopg.AsyncConnection):
        cur = await conn.execute(
            "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]
    async with conn.cursor() as cur:
        await cur.execute("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        (user,) = await cur.fetchone()
        await cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        (_, version) = await cur.fetchone()
    return user, version.startswith("TLSv1.")


async def close(conn: Any) -> None:
    if isinstance(conn, psycopg.AsyncConnection):
        await conn.close()
    else:  # aiomysql's close() only schedules it: the loop may end before it happens
        await conn.ensure_closed()


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_async_connect_with_iam(bed: Bed, aws_env: dict[str, str], engine: str) -> None:
    async def main() -> tuple[str, bool]:
        conn = await securedb.async_connect(
            iam_url(bed, engine), auth="iam", ca_bundle=str(bed.pki.ca)
        )
        try:
            return await facts(conn)
        finally:
            await close(conn)

    assert asyncio.run(main()) == ("iam_user", True)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_async_tunnel_to_rds_endpoint_name(bed: Bed, aws_env: dict[str, str], engine: str) -> None:
    """The socket goes to the forward; TLS and the token name the real endpoint."""
    port = bed.primary.port if engine == "postgresql" else bed.mariadb.port
    name = certs.PG_INSTANCE if engine == "postgresql" else certs.MYSQL_INSTANCE
    fwd = bed.forwarder(("127.0.0.1", port))
    url = f"{engine}://iam_user@{name}/app"

    async def main() -> tuple[str, bool]:
        conn = await securedb.async_connect(
            url, auth="iam", ca_bundle=str(bed.pki.ca), tunnel=f"127.0.0.1:{fwd.port}"
        )
        try:
            return await facts(conn)
        finally:
            await close(conn)

    assert asyncio.run(main()) == ("iam_user", True)
    assert fwd.accepted == 1
    group = "pg" if engine == "postgresql" else "mysql"
    assert bed.verifier_log.read_text().splitlines()[-1].endswith(f"{group} iam_user ok")


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_async_tls_refusals(bed: Bed, aws_env: dict[str, str], engine: str) -> None:
    port = bed.primary.port if engine == "postgresql" else bed.mariadb.port
    before = bed.verifier_log.read_text()

    async def untrusted() -> None:
        await securedb.async_connect(
            iam_url(bed, engine), auth="iam", ca_bundle=str(bed.pki.untrusted_ca)
        )

    async def wrong_name() -> None:
        await securedb.async_connect(
            f"{engine}://iam_user@db.example.com/app",
            auth="iam",
            region="us-east-1",
            ca_bundle=str(bed.pki.ca),
            tunnel=f"127.0.0.1:{port}",
        )

    with pytest.raises(errors.TLSError, match="not trusted"):
        asyncio.run(untrusted())
    with pytest.raises(errors.TLSError, match=r"does not name db\.example\.com"):
        asyncio.run(wrong_name())
    assert bed.verifier_log.read_text() == before  # no token reached a server


def test_aiomysql_server_without_tls_gets_no_credential(aws_env: dict[str, str], bed: Bed) -> None:
    """aiomysql alone would go on in plaintext; securedb's connection class refuses."""

    async def main() -> None:
        await securedb.async_connect(
            f"mysql://iam_user@127.0.0.1:{server.port}/app",
            auth="iam",
            ca_bundle=str(bed.pki.ca),
        )

    with fakes.FakeServer(fakes.mysql_without_tls) as server, pytest.raises(errors.TLSError):
        asyncio.run(main())
    assert b"iam_user" not in server.received
    assert b"X-Amz" not in server.received


async def ticking(done: threading.Event, ticks: list[int]) -> None:
    """Counts event-loop turns until `done`; sets nothing, blocks nothing."""
    while not done.is_set():
        ticks.append(1)
        await asyncio.sleep(0)


def test_secret_fetch_runs_off_the_event_loop(bed: Bed, aws_env: dict[str, str]) -> None:
    """The Secrets Manager call waits until the loop has turned 20 times meanwhile.

    Were the fetch on the loop, the loop could not turn: the fetch would give up after
    10 s and the connect would fail.
    """
    boto3.client("secretsmanager").create_secret(
        Name="rds/async",
        SecretString=json.dumps({"username": postgres.APP_USER, "password": postgres.APP_PASSWORD}),
    )
    url = f"postgresql://localhost:{bed.primary.port}/app"
    ticks: list[int] = []
    fetched = threading.Event()
    import botocore.session

    session = botocore.session.get_session()

    def slow_until_the_loop_turns(**_: Any) -> None:
        deadline = time.monotonic() + 10
        while len(ticks) < 20 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(ticks) >= 20, "the event loop did not turn during the fetch"

    from securedb.credentials import aws

    aws.session().register("before-call.secrets-manager.GetSecretValue", slow_until_the_loop_turns)
    try:

        async def main() -> tuple[str, bool]:
            ticker = asyncio.create_task(ticking(fetched, ticks))
            try:
                conn = await securedb.async_connect(
                    url, secret_id="rds/async", ca_bundle=str(bed.pki.ca)
                )
            finally:
                fetched.set()
                await ticker
            try:
                return await facts(conn)
            finally:
                await conn.close()

        assert asyncio.run(main()) == ("app_user", True)
    finally:
        aws.session().unregister(
            "before-call.secrets-manager.GetSecretValue", slow_until_the_loop_turns
        )
    del session


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_30_tasks_across_token_lifetimes(bed: Bed, aws_env: dict[str, str], engine: str) -> None:
    """30 tasks make new connections for over two 8-second token lifetimes: no error.

    Each token is handed out for 5 of its 8 seconds (the rest is the margin for a login
    to reach the server in time), so 17 s see at least three.
    """
    eng = securedb.async_engine(
        iam_url(bed, engine),
        auth="iam",
        ca_bundle=str(bed.pki.ca),
        iam_token_ttl=8,
        poolclass=sa.NullPool,
    )
    tokens: set[str] = set()
    errors_seen: list[str] = []
    done = [0]

    async def task(deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                async with eng.connect() as conn:
                    user = (
                        await conn.execute(
                            sa.text(
                                "SELECT current_user()"
                                if engine == "mysql"
                                else "SELECT current_user"
                            )
                        )
                    ).scalar()
                    assert str(user).split("@")[0] == "iam_user"
                    driver = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
                    tokens.add(driver.info.password if engine == "postgresql" else driver._password)
                done[0] += 1
            except Exception as exc:
                errors_seen.append(f"{type(exc).__name__}: {exc}")

    async def main() -> None:
        deadline = time.monotonic() + 17
        await asyncio.gather(*(task(deadline) for _ in range(30)))
        await eng.dispose()

    asyncio.run(main())
    assert errors_seen == []
    assert done[0] >= 30
    assert len(tokens) >= 3  # the first token, and at least two refreshes


def test_async_pool_is_opened_by_async_with(bed: Bed, aws_env: dict[str, str]) -> None:
    url = iam_url(bed, "postgresql")
    key = identity(Config.from_url(url, auth="iam", ca_bundle=str(bed.pki.ca)))

    async def main() -> None:
        pool = securedb.async_pool(url, auth="iam", ca_bundle=str(bed.pki.ca), max_size=2)
        before = bed.verifier_log.read_text()
        assert bed.verifier_log.read_text() == before  # not opened: no login yet
        async with pool:
            async with pool.connection() as conn:
                assert await facts(conn) == ("iam_user", True)
                first = conn
            pool.invalidate()
            async with pool.connection() as conn:
                assert conn is not first  # made before invalidate(): discarded
                assert await facts(conn) == ("iam_user", True)
        assert key not in _state.registry.entries  # close() released the cache

    asyncio.run(main())


def test_async_pool_refuses_weakening_kwargs(bed: Bed, aws_env: dict[str, str]) -> None:
    with pytest.raises(errors.ConfigError, match="sslmode='require'"):
        securedb.async_pool(
            f"postgresql://iam_user@{certs.PG_INSTANCE}/app",
            auth="iam",
            kwargs={"sslmode": "require"},
        )


# --- run_transaction_async through a writer flip ------------------------------------------

WORKERS = 8


@pytest.fixture
def pair(bed: Bed) -> Any:
    """The PostgreSQL pair, with the replica synchronous; rebuilt afterwards."""
    bed.primary.psql("DROP TABLE IF EXISTS units; CREATE TABLE units (k text)", database="app")
    bed.primary.psql("GRANT ALL ON units TO app_user", database="app")
    bed.primary.set_synchronous(bed.replica.name)
    yield bed
    bed.rebuild_pair()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["async_engine", "async_pool", "asyncpg_engine", "asyncpg_pool"])
def test_run_transaction_async_through_a_writer_flip(
    pair: Bed, aws_env: dict[str, str], target: str
) -> None:
    bed = pair
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))  # the cluster endpoint's DNS
    scheme = "postgresql+asyncpg" if target.startswith("asyncpg") else "postgresql"
    url = f"{scheme}://iam_user@{certs.PG_CLUSTER}:5432/app"
    options = {"auth": "iam", "ca_bundle": str(bed.pki.ca), "tunnel": f"127.0.0.1:{fwd.port}"}
    committed: list[str] = []
    unknown: list[str] = []
    other: list[str] = []
    commit_times: list[float] = []

    def insert(key: str) -> Callable[[Any], Awaitable[None]]:
        async def unit(conn: Any) -> None:
            if target.endswith("engine"):
                await conn.execute(sa.text("INSERT INTO units (k) VALUES (:k)"), {"k": key})
            elif target == "asyncpg_pool":
                await conn.execute("INSERT INTO units (k) VALUES ($1)", key)
            else:
                await conn.execute("INSERT INTO units (k) VALUES (%s)", (key,))

        return unit

    async def worker(n: int, stop: asyncio.Event, handle: Any) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            key = f"w{n}-{number}"
            try:
                await securedb.run_transaction_async(handle, insert(key), deadline=30)
            except errors.TransactionOutcomeUnknown:
                unknown.append(key)
            except Exception as exc:
                other.append(f"{type(exc).__name__}: {exc}")
            else:
                committed.append(key)
                commit_times.append(time.monotonic())
            await asyncio.sleep(0)

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)

    async def main() -> float:
        handle: Any
        if target.endswith("engine"):
            handle = securedb.async_engine(url, **options, pool_size=WORKERS)
        elif target == "asyncpg_pool":
            handle = await securedb.async_pool(url, **options, min_size=1, max_size=WORKERS)
        else:
            handle = securedb.async_pool(url, **options, min_size=1, max_size=WORKERS)
            await handle.open()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(worker(n, stop, handle)) for n in range(WORKERS)]
        await until(lambda: len(committed) >= 50, "50 commits before the flip")
        await asyncio.to_thread(bed.primary.stop, "immediate")
        await asyncio.to_thread(bed.replica.promote)
        fwd.switch(("127.0.0.1", bed.replica.port))
        switched = time.monotonic()
        mark = len(committed)
        await until(lambda: len(committed) >= mark + 50, "50 commits after the flip")
        stop.set()
        await asyncio.gather(*tasks)
        if target.endswith("engine"):
            await handle.dispose()
        else:
            await handle.close()
        return switched

    switched = asyncio.run(main())
    assert other == []
    rows = Counter(bed.replica.psql("SELECT k FROM units", database="app").split())
    # No acknowledged write lost, none written twice: each key with the rows it has.
    assert {key: rows[key] for key in committed if rows[key] != 1} == {}
    assert all(rows[key] in (0, 1) for key in unknown)
    after = [t for t in commit_times if t > switched]
    print(
        f"\n{target} writer flip: {len(committed)} committed, {len(unknown)} unknown; "
        f"first commit {after[0] - switched:.3f} s after the switch"
    )
