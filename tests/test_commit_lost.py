"""A connection lost at the COMMIT, on the wire: run_transaction's three ways out.

The forwarder cuts the connection at the next message the client sends, armed at the end
of the unit of work, where that message is run_transaction's COMMIT (TLS hides the bytes,
so the test, not the forwarder, knows which message it is). Either the COMMIT never
reaches the server, or the server commits and its answer never reaches the client: the
client cannot tell the two apart, which is why the outcome is unknown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import securedb
from bed import mariadb, postgres
from bed.bed import Bed
from bed.forwarder import Forwarder
from securedb import errors
from securedb.drivers import Failure
from securedb.failover import RetryDetails, failure_of

pytestmark = pytest.mark.bed

ENGINES = ["postgresql", "mysql"]
# An upsert: running the unit twice leaves one row.
UPSERT = {
    "postgresql": "INSERT INTO commit_cut (k) VALUES (:k) ON CONFLICT (k) DO NOTHING",
    "mysql": "INSERT IGNORE INTO commit_cut (k) VALUES (:k)",
}


@pytest.fixture(scope="module")
def tables(bed: Bed) -> None:
    bed.primary.psql(
        "CREATE TABLE IF NOT EXISTS commit_cut (k text PRIMARY KEY); "
        "GRANT ALL ON commit_cut TO app_user",
        database="app",
    )
    bed.mariadb.sql("CREATE TABLE IF NOT EXISTS app.commit_cut (k varchar(40) PRIMARY KEY)")


class Setup:
    """An engine reaching `engine`'s server through a forwarder; rows read by the bed."""

    def __init__(self, bed: Bed, engine: str) -> None:
        self.bed, self.engine = bed, engine
        if engine == "postgresql":
            port, user = bed.primary.port, f"{postgres.APP_USER}:{postgres.APP_PASSWORD}"
        else:
            port, user = bed.mariadb.port, f"{mariadb.APP_USER}:{mariadb.APP_PASSWORD}"
        self.fwd: Forwarder = bed.forwarder(("127.0.0.1", port))
        self.eng = securedb.engine(
            f"{engine}://{user}@localhost:{self.fwd.port}/app",
            ca_bundle=str(bed.pki.ca),
            pool_size=1,
        )
        self.key = uuid.uuid4().hex

    def rows(self) -> int:
        """How many rows with this test's key the server holds, committed."""
        sql = f"SELECT count(*) FROM commit_cut WHERE k = '{self.key}'"
        if self.engine == "postgresql":
            return int(self.bed.primary.psql(sql, database="app"))
        return int(self.bed.mariadb.sql(sql.replace("commit_cut", "app.commit_cut")))

    def insert(self, conn: sa.Connection) -> None:
        conn.execute(sa.text(UPSERT[self.engine]), {"k": self.key})


@pytest.fixture(params=ENGINES)
def setup(request: pytest.FixtureRequest, bed: Bed, tables: None) -> Iterator[Setup]:
    made = Setup(bed, request.param)
    yield made
    made.eng.dispose()
    made.fwd.stop()


@pytest.mark.parametrize("delivered", [False, True], ids=["never-arrived", "committed"])
def test_lost_commit_raises_outcome_unknown(setup: Setup, delivered: bool) -> None:
    """Work not marked idempotent is never re-run: the caller learns the outcome is unknown."""
    calls: list[int] = []

    def unit(conn: sa.Connection) -> None:
        calls.append(1)
        setup.insert(conn)
        setup.fwd.cut_next_message(delivered=delivered)  # the next message is the COMMIT

    with pytest.raises(errors.TransactionOutcomeUnknown, match="may or may not") as caught:
        securedb.run_transaction(setup.eng, unit)
    assert calls == [1]
    assert setup.fwd.cuts == 1
    assert failure_of(caught.value.__cause__, setup.engine) is Failure.FAILOVER
    # Committed on the server or not: either is possible, so the client cannot know.
    assert setup.rows() == (1 if delivered else 0)


def test_lost_commit_of_idempotent_work_is_run_again(setup: Setup) -> None:
    """The server committed, its answer was lost: idempotent work runs again, one row."""
    calls: list[int] = []
    retries: list[RetryDetails] = []

    def unit(conn: sa.Connection) -> str:
        calls.append(1)
        setup.insert(conn)
        if len(calls) == 1:
            setup.fwd.cut_next_message(delivered=True)
        return "done"

    result = securedb.run_transaction(setup.eng, unit, idempotent=True, on_retry=retries.append)
    assert result == "done"
    assert len(calls) == 2
    assert [r.failure for r in retries] == ["FAILOVER"]
    assert setup.fwd.cuts == 1
    assert setup.fwd.accepted == 2  # the second run on a fresh connection
    assert setup.rows() == 1


class FakeTime:
    """run_transaction's clock: its backoff sleeps advance it; nothing waits for real."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_commit_lost_every_time_ends_at_the_deadline(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every COMMIT is lost: idempotent work is retried until the deadline, not forever,
    and the caller gets FailoverError (not TransactionOutcomeUnknown) with the last error."""
    clock = FakeTime()
    monkeypatch.setattr("securedb.failover.time", clock)
    deadline, attempts = 5.0, 100
    calls: list[int] = []
    retries: list[RetryDetails] = []

    def unit(conn: sa.Connection) -> None:
        calls.append(1)
        setup.insert(conn)
        setup.fwd.cut_next_message()

    with pytest.raises(errors.FailoverError, match="gave up after") as caught:
        securedb.run_transaction(
            setup.eng,
            unit,
            idempotent=True,
            attempts=attempts,
            deadline=deadline,
            on_retry=retries.append,
        )
    assert type(caught.value) is errors.FailoverError
    assert f"gave up after {len(calls)} attempts" in str(caught.value)
    assert 2 <= len(calls) < attempts  # re-run, then stopped by the deadline
    assert setup.fwd.cuts == len(calls)
    assert len(retries) == len(calls) - 1
    assert all(r.waited_so_far + r.wait <= deadline for r in retries)
    assert clock.now - 1000.0 <= deadline
    cause: Any = caught.value.__cause__
    assert failure_of(cause, setup.engine) is Failure.FAILOVER
    assert setup.rows() == 0
