"""Credentials that change under load: token expiry, secret rotation, single flight."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import sqlalchemy as sa

import securedb
from bed import postgres
from bed.bed import Bed
from securedb.config import Config
from securedb.credentials import cache_for
from securedb.credentials.base import Credential

pytestmark = [pytest.mark.bed, pytest.mark.slow]


def test_short_lived_tokens_never_fail(bed: Bed, aws_env: dict[str, str]) -> None:
    """iam_token_ttl=10 for 40 s of new connections every 100 ms: no refusal, >= 3 tokens."""
    url = f"postgresql://iam_user@localhost:{bed.primary.port}/app"
    eng = securedb.engine(
        url, auth="iam", ca_bundle=str(bed.pki.ca), iam_token_ttl=10, poolclass=sa.NullPool
    )
    tokens: set[str] = set()
    failures = 0
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            with eng.connect() as conn:
                assert conn.execute(sa.text("SELECT current_user")).scalar() == "iam_user"
                tokens.add(conn.connection.driver_connection.info.password)
        except Exception:
            failures += 1
        time.sleep(0.1)
    eng.dispose()
    assert failures == 0
    assert len(tokens) >= 3


def wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
    """Wait until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_rotation_under_load(
    bed: Bed, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    """8 threads (asyncpg: 8 tasks) open connections and query while the password
    rotates: zero failures.

    The rotation takes AWS's four steps, and each waits until the workers have made
    connections in the state the previous step left, however fast or slow they are.
    """
    user, first, second = "rotating_user", "rotating-password-1", "rotating-password-2"
    bed.primary.psql(f"DROP ROLE IF EXISTS {user}; CREATE ROLE {user} LOGIN PASSWORD '{first}'")
    sm = boto3.client("secretsmanager")
    fields = {
        "username": user,
        "password": first,
        "engine": "postgres",
        "host": "localhost",
        "port": bed.primary.port,
        "dbname": "app",
    }
    sm.create_secret(Name="rds/rotating", SecretString=json.dumps(fields))
    stop, errors_seen, done = threading.Event(), [], [0]
    caplog.set_level("INFO", logger="securedb")
    if driver == "asyncpg":
        pytest.importorskip("asyncpg")
        worker, dispose = asyncpg_workers(stop, errors_seen, done, str(bed.pki.ca))
    else:
        eng = securedb.engine(
            secret_id="rds/rotating", ca_bundle=str(bed.pki.ca), poolclass=sa.NullPool
        )
        dispose = eng.dispose

        def worker() -> None:
            while not stop.is_set():
                try:
                    with eng.connect() as conn:
                        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
                    done[0] += 1
                except Exception as exc:
                    errors_seen.append(repr(exc))

    def after(count: int) -> None:
        mark = done[0]
        wait_for(lambda: done[0] >= mark + count or errors_seen, f"{count} connections")

    threads = [threading.Thread(target=worker) for _ in range(1 if driver == "asyncpg" else 8)]
    for t in threads:
        t.start()
    after(20)
    old = sm.describe_secret(SecretId="rds/rotating")["VersionIdsToStages"]
    [old_version] = [v for v, stages in old.items() if "AWSCURRENT" in stages]
    pending = sm.put_secret_value(  # createSecret
        SecretId="rds/rotating",
        VersionStages=["AWSPENDING"],
        SecretString=json.dumps({**fields, "password": second}),
    )
    after(20)
    bed.primary.psql(f"ALTER ROLE {user} PASSWORD '{second}'")  # setSecret
    after(20)  # only AWSPENDING works now: AWSCURRENT still holds the old password
    sm.update_secret_version_stage(  # finishSecret
        SecretId="rds/rotating",
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending["VersionId"],
        RemoveFromVersionId=old_version,
    )
    after(20)
    stop.set()
    for t in threads:
        t.join()
    dispose()
    assert errors_seen == []
    # The window between setSecret and finishSecret was hit and crossed via AWSPENDING.
    assert any("refreshing once" in r.getMessage() for r in caplog.records)
    with securedb.connect(secret_id="rds/rotating", ca_bundle=str(bed.pki.ca)) as conn:
        assert conn.info.password == second


def asyncpg_workers(
    stop: threading.Event, errors_seen: list[str], done: list[int], ca: str
) -> tuple[Callable[[], None], Callable[[], None]]:
    """A thread running 8 tasks that each open an asyncpg connection and query, until
    `stop`; and the clean-up (nothing: every connection is closed as it ends)."""

    async def task() -> None:
        while not stop.is_set():
            try:
                conn = await securedb.async_connect(
                    secret_id="rds/rotating", driver="asyncpg", ca_bundle=ca
                )
                try:
                    assert await conn.fetchval("SELECT 1") == 1
                finally:
                    await conn.close()
                done[0] += 1
            except Exception as exc:
                errors_seen.append(repr(exc))

    async def tasks() -> None:
        await asyncio.gather(*(task() for _ in range(8)))

    return lambda: asyncio.run(tasks()), lambda: None


class Counting:
    """Wraps a real source and counts its fetches (signings or GetSecretValue calls).

    `after_fetch` runs after each fetch: a test rotates the secret there, so every fetch
    gets a password that no other fetch gets.
    """

    def __init__(self, source: Any, after_fetch: Callable[[], None] = lambda: None) -> None:
        self.source, self.name, self.calls = source, source.name, 0
        self.after_fetch = after_fetch

    def fetch(self, rejected: Credential | None = None) -> Credential:
        self.calls += 1
        try:
            return self.source.fetch(rejected)
        finally:
            self.after_fetch()


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


THREADS = 64


def together(
    cfg: Config, after_fetch: Callable[[], None] = lambda: None
) -> tuple[Counting, Clock, Callable[[], set[str]]]:
    """The cache for `cfg`, counted and on a test clock, and a function that makes 64
    threads ask it at once and returns the passwords they got.

    A fetch that starts while they ask lasts until every one of them has asked, so that
    callers who did not share it would fetch while it is still running.
    """
    cache = cache_for(cfg)
    clock = Clock()
    asked = threading.Condition()
    callers: list[int] = []

    def held_then_after_fetch() -> None:
        with asked:
            if callers:
                asked.wait_for(lambda: len(callers) == THREADS, 10)
        after_fetch()

    counting = Counting(cache.source, held_then_after_fetch)
    # The real source, on a clock the test moves.
    cache.source, cache._clock, counting.source._clock = counting, clock, clock

    def ask() -> set[str]:
        barrier = threading.Barrier(THREADS)
        seen: set[str] = set()

        def caller() -> None:
            barrier.wait()
            with asked:
                callers.append(1)
                asked.notify_all()
            seen.add(cache.get().password)

        workers = [threading.Thread(target=caller) for _ in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        callers.clear()
        return seen

    return counting, clock, ask


def test_single_flight_64_threads_iam(bed: Bed, aws_env: dict[str, str]) -> None:
    """Expired: every caller waits, and all of them for the same one signing."""
    cfg = Config.from_url(
        f"postgresql://iam_user@localhost:{bed.primary.port}/app", auth="iam", refresh="lazy"
    )
    counting, clock, ask = together(cfg)
    ask()
    assert counting.calls == 1  # 64 threads at an empty cache, one signing
    clock.now += 10_000  # every token has expired
    assert len(ask()) == 1
    assert counting.calls == 2  # then exactly one signing more for 64 threads


def test_single_flight_64_threads_secret(bed: Bed, aws_env: dict[str, str]) -> None:
    """The secret rotates after every GetSecretValue: two fetches would mean two passwords."""
    sm = boto3.client("secretsmanager")
    rotations = itertools.count(1)

    def rotate() -> None:
        password = f"sf-password-{next(rotations)}"
        sm.put_secret_value(
            SecretId="rds/sf",
            SecretString=json.dumps({"username": postgres.APP_USER, "password": password}),
        )

    sm.create_secret(
        Name="rds/sf",
        SecretString=json.dumps({"username": postgres.APP_USER, "password": "sf-password-0"}),
    )
    cfg = Config.from_url(
        f"postgresql://x@localhost:{bed.primary.port}/app", secret_id="rds/sf", refresh="lazy"
    )
    counting, clock, ask = together(cfg, after_fetch=rotate)
    # Nothing cached: every caller waits for the one fetch.
    assert ask() == {"sf-password-0"}
    assert counting.calls == 1
    # Due for a refresh but still valid: one caller refreshes, the others are served the
    # valid value meanwhile; none fetches again.
    clock.now += cfg.secret_ttl
    seen = ask()
    assert "sf-password-1" in seen
    assert seen <= {"sf-password-0", "sf-password-1"}
    assert counting.calls == 2
