"""Credentials that change under load: token expiry, secret rotation, single flight."""

from __future__ import annotations

import json
import threading
import time
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


def rotate(bed: Bed, secret: str, new_password: str) -> None:
    """AWS's four steps: createSecret, setSecret, testSecret, finishSecret."""
    sm = boto3.client("secretsmanager")
    current = json.loads(sm.get_secret_value(SecretId=secret)["SecretString"])
    pending = sm.put_secret_value(
        SecretId=secret,
        VersionStages=["AWSPENDING"],
        SecretString=json.dumps({**current, "password": new_password}),
    )
    time.sleep(0.3)
    bed.primary.psql(f"ALTER ROLE {current['username']} PASSWORD '{new_password}'")
    time.sleep(0.5)  # the database wants the new password; AWSCURRENT still has the old
    stages = sm.describe_secret(SecretId=secret)["VersionIdsToStages"]
    old = next(v for v, s in stages.items() if "AWSCURRENT" in s)
    sm.update_secret_version_stage(
        SecretId=secret,
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending["VersionId"],
        RemoveFromVersionId=old,
    )


def test_rotation_under_load(
    bed: Bed, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """8 threads open connections and query while the password rotates: zero failures."""
    user, first = "rotating_user", "rotating-password-1"
    bed.primary.psql(f"DROP ROLE IF EXISTS {user}; CREATE ROLE {user} LOGIN PASSWORD '{first}'")
    boto3.client("secretsmanager").create_secret(
        Name="rds/rotating",
        SecretString=json.dumps(
            {
                "username": user,
                "password": first,
                "engine": "postgres",
                "host": "localhost",
                "port": bed.primary.port,
                "dbname": "app",
            }
        ),
    )
    eng = securedb.engine(
        secret_id="rds/rotating", ca_bundle=str(bed.pki.ca), poolclass=sa.NullPool
    )
    stop, errors_seen, done = threading.Event(), [], [0]
    caplog.set_level("INFO", logger="securedb")

    def worker() -> None:
        while not stop.is_set():
            try:
                with eng.connect() as conn:
                    assert conn.execute(sa.text("SELECT 1")).scalar() == 1
                done[0] += 1
            except Exception as exc:
                errors_seen.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    rotate(bed, "rds/rotating", "rotating-password-2")
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    eng.dispose()
    assert errors_seen == []
    assert done[0] > 50
    # The window between setSecret and finishSecret was hit and crossed via AWSPENDING.
    assert any("refreshing once" in r.getMessage() for r in caplog.records)
    with securedb.connect(secret_id="rds/rotating", ca_bundle=str(bed.pki.ca)) as conn:
        assert conn.info.password == "rotating-password-2"


class Counting:
    """Wraps a real source and counts its fetches (signings or GetSecretValue calls)."""

    def __init__(self, source: Any) -> None:
        self.source, self.name, self.calls = source, source.name, 0

    def fetch(self, rejected: Credential | None = None) -> Credential:
        self.calls += 1
        return self.source.fetch(rejected)


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def at_expiry(cfg: Config, threads: int = 64) -> tuple[Counting, set[str]]:
    cache = cache_for(cfg)
    clock = Clock()
    counting = Counting(cache.source)
    # The real source, on a clock the test moves.
    cache.source, cache._clock, counting.source._clock = counting, clock, clock
    cache.get()
    clock.now += 10_000  # every cached value has expired
    barrier = threading.Barrier(threads)
    seen: set[str] = set()

    def caller() -> None:
        barrier.wait()
        seen.add(cache.get().password)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return counting, seen


@pytest.mark.parametrize("auth", ["iam", "secret"])
def test_single_flight_64_threads(bed: Bed, aws_env: dict[str, str], auth: str) -> None:
    if auth == "secret":
        boto3.client("secretsmanager").create_secret(
            Name="rds/sf",
            SecretString=json.dumps(
                {"username": postgres.APP_USER, "password": postgres.APP_PASSWORD}
            ),
        )
        cfg = Config.from_url(
            f"postgresql://x@localhost:{bed.primary.port}/app", secret_id="rds/sf", refresh="lazy"
        )
    else:
        cfg = Config.from_url(
            f"postgresql://iam_user@localhost:{bed.primary.port}/app", auth="iam", refresh="lazy"
        )
    counting, seen = at_expiry(cfg)
    assert counting.calls == 2  # the first fill, then exactly one for 64 threads
    assert len(seen) == 1
