"""Failover classification, each entry produced for real on the bed, and pool invalidation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

import securedb
from bed import mariadb, postgres
from bed.bed import Bed
from securedb import errors
from securedb.drivers import Failure
from securedb.failover import RetryDetails, failure_of

pytestmark = pytest.mark.bed


def pg_url(port: int) -> str:
    return f"postgresql://{postgres.APP_USER}:{postgres.APP_PASSWORD}@localhost:{port}/app"


def my_url(port: int) -> str:
    return f"mysql://{mariadb.APP_USER}:{mariadb.APP_PASSWORD}@127.0.0.1:{port}/app"


def caught(action: Any) -> BaseException:
    try:
        action()
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


@pytest.fixture
def replica(bed: Bed) -> Iterator[Any]:
    """The replica, restarted after a test stops it."""
    yield bed.replica
    if not bed.replica.running:
        bed.replica.start()
        bed.replica.wait_ready()


# --- PostgreSQL -------------------------------------------------------------------------


def wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
    """Wait until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_pg_server_stopped_fast_mid_query(bed: Bed, replica: Any) -> None:
    """stop -m fast terminates a running query with 57P01 (admin_shutdown), every time.

    The query is in flight when the server stops, so the error is the answer to it; an
    idle connection would find the server gone either by that error or by a closed
    socket, whichever the client reads first.
    """
    conn = securedb.connect(pg_url(replica.port), ca_bundle=str(bed.pki.ca))
    pid = conn.info.backend_pid
    errors_seen: list[BaseException] = []
    query = threading.Thread(
        target=lambda: errors_seen.append(caught(lambda: conn.execute("SELECT pg_sleep(60)")))
    )
    query.start()
    wait_for(
        lambda: (
            replica.psql(
                f"SELECT wait_event FROM pg_stat_activity WHERE pid = {pid} AND state = 'active'"
            ).strip()
            == "PgSleep"
        ),
        "the query to run",
    )
    replica.stop("fast")
    query.join(30)
    [exc] = errors_seen
    assert getattr(exc, "sqlstate", None) == "57P01"
    assert failure_of(exc, "postgresql") is Failure.FAILOVER


def test_pg_server_stopped_immediate(bed: Bed, replica: Any) -> None:
    """stop -m immediate just closes: no SQLSTATE, recognised by the lost connection."""
    conn = securedb.connect(pg_url(replica.port), ca_bundle=str(bed.pki.ca))
    replica.stop("immediate")
    exc = caught(lambda: conn.execute("SELECT 1"))
    assert failure_of(exc, "postgresql") is Failure.FAILOVER


def test_pg_dropped_connection(bed: Bed) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    conn = securedb.connect(pg_url(fwd.port), ca_bundle=str(bed.pki.ca))
    fwd.drop()
    exc = caught(lambda: conn.execute("SELECT 1"))
    assert getattr(exc, "sqlstate", None) is None
    assert failure_of(exc, "postgresql") is Failure.FAILOVER


def test_pg_refused(bed: Bed) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    fwd.refuse()
    exc = caught(lambda: securedb.connect(pg_url(fwd.port), ca_bundle=str(bed.pki.ca)))
    assert failure_of(exc, "postgresql") is Failure.FAILOVER


def test_pg_write_on_standby(bed: Bed) -> None:
    with securedb.connect(pg_url(bed.replica.port), ca_bundle=str(bed.pki.ca)) as conn:
        exc = caught(lambda: conn.execute("CREATE TABLE nope (x int)"))
    assert getattr(exc, "sqlstate", None) == "25006"
    assert failure_of(exc, "postgresql") is Failure.READ_ONLY


def test_pg_auth_and_tls_are_not_failover(bed: Bed) -> None:
    import psycopg

    bad = pg_url(bed.primary.port).replace(postgres.APP_PASSWORD, "wrong")
    auth = caught(
        lambda: psycopg.connect(
            bad.replace("postgresql://", "postgresql://")
            + (f"?sslmode=verify-full&sslrootcert={bed.pki.ca}")
        )
    )
    assert failure_of(auth, "postgresql") is Failure.AUTH
    tls = caught(
        lambda: psycopg.connect(
            pg_url(bed.primary.port) + (f"?sslmode=verify-full&sslrootcert={bed.pki.untrusted_ca}")
        )
    )
    assert failure_of(tls, "postgresql") is Failure.TLS


# --- MariaDB ------------------------------------------------------------------------------


def test_mysql_killed_mid_query_then_reused(bed: Bed) -> None:
    """KILL during a query: 2013 (or 1927); using the connection again: InterfaceError(0)."""
    conn = securedb.connect(my_url(bed.mariadb.port), ca_bundle=str(bed.pki.ca))
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        (conn_id,) = cur.fetchone()
    outcome: list[BaseException] = []
    query = threading.Thread(
        target=lambda: outcome.append(caught(lambda: conn.cursor().execute("SELECT SLEEP(60)")))
    )
    query.start()
    wait_for(  # killed during the query, not before it
        lambda: (
            bed.mariadb.sql(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                f"WHERE ID = {conn_id} AND INFO LIKE 'SELECT SLEEP%'"
            ).strip()
            == "1"
        ),
        "the query to run",
    )
    bed.mariadb.sql(f"KILL {conn_id}")
    query.join(30)
    [exc] = outcome
    assert exc.args[0] in (2013, 1927)
    assert failure_of(exc, "mysql") is Failure.FAILOVER
    again = caught(lambda: conn.cursor().execute("SELECT 1"))
    assert isinstance(again, pymysql.err.InterfaceError)
    assert failure_of(again, "mysql") is Failure.FAILOVER


def test_mysql_refused(bed: Bed) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.mariadb.port))
    fwd.refuse()
    exc = caught(lambda: securedb.connect(my_url(fwd.port), ca_bundle=str(bed.pki.ca)))
    assert exc.args[0] == 2003
    assert failure_of(exc, "mysql") is Failure.FAILOVER


def test_mysql_read_only(bed: Bed) -> None:
    conn = securedb.connect(my_url(bed.mariadb.port), ca_bundle=str(bed.pki.ca))
    bed.mariadb.sql("SET GLOBAL read_only = ON")
    try:
        exc = caught(lambda: conn.cursor().execute("CREATE TABLE nope (x int)"))
    finally:
        bed.mariadb.sql("SET GLOBAL read_only = OFF")
    assert exc.args[0] == 1290
    assert failure_of(exc, "mysql") is Failure.READ_ONLY


def test_mysql_certificate_failure_is_not_failover(bed: Bed) -> None:
    import ssl

    exc = caught(
        lambda: pymysql.connect(
            host="127.0.0.1",
            port=bed.mariadb.port,
            user="app_user",
            password="x",
            ssl=ssl.create_default_context(cafile=str(bed.pki.untrusted_ca)),
        )
    )
    assert exc.args[0] == 2003  # PyMySQL wraps the ssl error in 2003
    assert failure_of(exc, "mysql") is Failure.TLS
    auth = caught(
        lambda: pymysql.connect(
            host="127.0.0.1",
            port=bed.mariadb.port,
            user="app_user",
            password="wrong",
            ssl=ssl.create_default_context(cafile=str(bed.pki.ca)),
        )
    )
    assert failure_of(auth, "mysql") is Failure.AUTH


# --- Pool invalidation and run_transaction ------------------------------------------------


def in_recovery(conn: Any) -> bool:
    return bool(conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar())


def test_engine_read_only_old_writer_invalidates_the_pool(bed: Bed) -> None:
    """Pooled connections reach the old writer, now a standby; DNS already moved."""
    fwd = bed.forwarder(("127.0.0.1", bed.replica.port))
    eng = securedb.engine(pg_url(fwd.port), ca_bundle=str(bed.pki.ca), pool_size=4)
    held = [eng.connect() for _ in range(4)]
    assert all(in_recovery(c) for c in held)
    for c in held:
        c.close()
    fwd.switch(("127.0.0.1", bed.primary.port))  # the endpoint now names the new writer
    retries: list[RetryDetails] = []

    def write(conn: sa.Connection) -> bool:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS flips (x int)"))
        return in_recovery(conn)

    assert securedb.run_transaction(eng, write, on_retry=retries.append) is False
    assert [r.failure for r in retries] == ["READ_ONLY"]
    for _ in range(8):  # no connection to the old writer survived
        with eng.connect() as conn:
            assert not in_recovery(conn)
    eng.dispose()


def test_pool_read_only_old_writer_invalidates_the_pool(bed: Bed) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.replica.port))
    with securedb.pool(pg_url(fwd.port), ca_bundle=str(bed.pki.ca), min_size=4) as pool:
        pool.wait()
        fwd.switch(("127.0.0.1", bed.primary.port))
        retries: list[RetryDetails] = []

        def write(conn: Any) -> bool:
            conn.execute("CREATE TABLE IF NOT EXISTS flips (x int)")
            return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])

        assert securedb.run_transaction(pool, write, on_retry=retries.append) is False
        assert [r.failure for r in retries] == ["READ_ONLY"]
        for _ in range(8):
            with pool.connection() as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)


def test_mysql_read_only_then_writable(bed: Bed) -> None:
    eng = securedb.engine(my_url(bed.mariadb.port), ca_bundle=str(bed.pki.ca), pool_size=2)
    with eng.connect() as conn:
        before = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
    bed.mariadb.sql("SET GLOBAL read_only = ON")
    try:

        def write(conn: sa.Connection) -> int:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS flips (x int)"))
            return int(conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar())

        after = securedb.run_transaction(
            eng, write, on_retry=lambda _: bed.mariadb.sql("SET GLOBAL read_only = OFF")
        )
    finally:
        bed.mariadb.sql("SET GLOBAL read_only = OFF")
    assert after != before  # a fresh connection, not the pooled one
    eng.dispose()


def test_other_errors_are_not_retried(bed: Bed) -> None:
    eng = securedb.engine(pg_url(bed.primary.port), ca_bundle=str(bed.pki.ca))
    calls: list[int] = []

    def bad_sql(conn: sa.Connection) -> None:
        calls.append(1)
        conn.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(sa.exc.ProgrammingError):
        securedb.run_transaction(eng, bad_sql)
    assert calls == [1]
    eng.dispose()


def test_gives_up_with_failover_error(bed: Bed) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    eng = securedb.engine(pg_url(fwd.port), ca_bundle=str(bed.pki.ca))
    fwd.refuse()
    with pytest.raises(errors.FailoverError, match="gave up after 3 attempts") as caught_exc:
        securedb.run_transaction(
            eng, lambda conn: conn.execute(sa.text("SELECT 1")), attempts=3, deadline=10
        )
    assert isinstance(caught_exc.value.__cause__, sa.exc.OperationalError)
    eng.dispose()


def test_run_transaction_rejects_other_targets() -> None:
    with pytest.raises(TypeError, match="engine"):
        securedb.run_transaction(object(), lambda conn: None)
