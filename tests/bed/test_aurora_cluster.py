"""The emulated Aurora PostgreSQL cluster (bed/aurora.py), on its real servers.

Clients connect by Aurora's names, which resolve through the test process's private
/etc/hosts (bed/names.py), and verify each server's certificate against the bed's CA.
Tests that fail over use `aurora_fresh`, which rebuilds the cluster afterwards.
"""

from __future__ import annotations

import datetime
import socket
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bed import procs, tokens
from bed.aurora import (
    CLUSTER,
    DOMAIN,
    MASTER_SESSION_ID,
    READER,
    SERVER_IDS,
    AuroraCluster,
    StatusRow,
    instance_host,
)
from bed.bed import Bed
from bed.names import Hosts
from bed.postgres import APP_PASSWORD, APP_USER, IAM_USER

pytestmark = pytest.mark.bed

STATUS = (
    "SELECT server_id, session_id, replica_lag_in_msec, last_update_timestamp, cpu "
    "FROM aurora_replica_status() ORDER BY server_id"
)
# aurora_replica_status()'s columns, in Aurora's order (its documentation lists them).
AURORA_COLUMNS = [
    "server_id",
    "session_id",
    "durable_lsn",
    "highest_lsn_rcvd",
    "current_read_lsn",
    "cur_replay_latency_in_usec",
    "active_txns",
    "is_current",
    "last_transport_error",
    "last_error_timestamp",
    "last_update_timestamp",
    "feedback_xmin",
    "feedback_epoch",
    "replica_lag_in_msec",
    "log_stream_speed_in_kib_per_second",
    "log_buffer_sequence_number",
    "oldest_read_view_trx_id",
    "oldest_read_view_lsn",
    "pending_read_ios",
    "read_ios",
    "iops",
    "cpu",
]


def connect(
    cluster: AuroraCluster,
    bed: Bed,
    host: str,
    user: str = APP_USER,
    password: str = APP_PASSWORD,
    **params: Any,
) -> psycopg.Connection[tuple[Any, ...]]:
    """A verify-full connection to `host`, an Aurora name, in autocommit."""
    return psycopg.connect(
        **params,
        host=host,
        user=user,
        password=password,
        port=cluster.port,
        dbname="app",
        sslmode="verify-full",
        sslrootcert=str(bed.pki.ca),
        gssencmode="disable",
        connect_timeout=5,
        autocommit=True,
    )


def one(conn: psycopg.Connection[tuple[Any, ...]], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def resolves(name: str) -> str:
    return str(socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0])


def test_names_resolve_and_certificates_name_them(aurora: AuroraCluster, bed: Bed) -> None:
    assert resolves(CLUSTER) == aurora.address("aurora-pg-1")
    assert resolves(READER) == aurora.address("aurora-pg-2")
    for server_id in SERVER_IDS:
        assert resolves(instance_host(server_id)) == aurora.address(server_id)
        with connect(aurora, bed, instance_host(server_id)) as conn:
            assert one(conn, "SELECT aurora_db_instance_identifier()") == server_id
            assert one(conn, "SELECT pg_is_in_recovery()") == (server_id != "aurora-pg-1")
    for name, server_id in ((CLUSTER, "aurora-pg-1"), (READER, "aurora-pg-2")):
        with connect(aurora, bed, name) as conn:
            assert one(conn, "SELECT aurora_db_instance_identifier()") == server_id
    # Each instance's certificate names that instance, not the others.
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        connect(aurora, bed, instance_host("aurora-pg-2"), hostaddr=aurora.address("aurora-pg-1"))


def test_every_instance_sees_one_writer_and_two_readers(aurora: AuroraCluster, bed: Bed) -> None:
    views = []
    for server_id in SERVER_IDS:
        with connect(aurora, bed, instance_host(server_id)) as conn:
            rows = conn.execute(STATUS).fetchall()
            cursor = conn.execute("SELECT * FROM aurora_replica_status()")
            assert [column.name for column in cursor.description or ()] == AURORA_COLUMNS
        now = datetime.datetime.now(datetime.timezone.utc)
        assert [(r[0], r[1] == MASTER_SESSION_ID) for r in rows] == [
            ("aurora-pg-1", True),
            ("aurora-pg-2", False),
            ("aurora-pg-3", False),
        ]
        for _, _, lag, updated, cpu in rows:
            assert 0 <= lag < 1000
            assert now - updated < datetime.timedelta(seconds=5)
            assert isinstance(cpu, float)
        views.append([row[:2] for row in rows])
    assert views[0] == views[1] == views[2]


def test_functions_are_aurora_shaped(aurora: AuroraCluster, bed: Bed) -> None:
    """In pg_catalog, typed as the AWS wrapper reads them, the status one a security definer."""
    with connect(aurora, bed, instance_host("aurora-pg-3")) as conn:
        functions = conn.execute(
            "SELECT proname, pronamespace::regnamespace::text, prosecdef FROM pg_proc "
            "WHERE proname LIKE 'aurora%' ORDER BY proname"
        ).fetchall()
        types = conn.execute(
            "SELECT pg_typeof(server_id)::text, pg_typeof(session_id)::text, "
            "pg_typeof(last_update_timestamp)::text, pg_typeof(replica_lag_in_msec)::text, "
            "pg_typeof(cpu)::text, pg_typeof(aurora_db_instance_identifier())::text "
            "FROM aurora_replica_status() LIMIT 1"
        ).fetchone()
    assert functions == [
        ("aurora_db_instance_identifier", "pg_catalog", False),
        ("aurora_replica_status", "pg_catalog", True),
    ]
    assert types == (
        "text",
        "text",
        "timestamp with time zone",
        "double precision",
        "double precision",
        "text",
    )


def test_aws_wrapper_recognises_aurora_on_every_instance(aurora: AuroraCluster, bed: Bed) -> None:
    """The wrapper's own dialect check and topology queries, on plain connections."""
    pytest.importorskip("aws_advanced_python_wrapper")
    from aws_advanced_python_wrapper.database_dialect import AuroraPgDialect  # type: ignore[import-untyped]
    from aws_advanced_python_wrapper.pg_driver_dialect import PgDriverDialect  # type: ignore[import-untyped]
    from aws_advanced_python_wrapper.utils.properties import Properties  # type: ignore[import-untyped]

    dialect = AuroraPgDialect()
    for server_id in SERVER_IDS:
        with connect(aurora, bed, instance_host(server_id)) as conn:
            assert dialect.is_dialect(conn, PgDriverDialect(Properties()))
            topology = conn.execute(dialect.topology_query).fetchall()
            writer = conn.execute(dialect.writer_id_query).fetchall()
            assert one(conn, dialect.is_reader_query) == (server_id != "aurora-pg-1")
        assert sorted((row[0], row[1]) for row in topology) == [
            ("aurora-pg-1", True),
            ("aurora-pg-2", False),
            ("aurora-pg-3", False),
        ]
        assert writer == ([("aurora-pg-1",)] if server_id == "aurora-pg-1" else [])


def test_iam_token_for_an_aurora_name_accepted(aurora: AuroraCluster, bed: Bed) -> None:
    for name in (instance_host("aurora-pg-3"), CLUSTER):
        token = tokens.mint(name, aurora.port, IAM_USER)
        with connect(aurora, bed, name, user=IAM_USER, password=token) as conn:
            assert one(conn, "SELECT current_user") == IAM_USER


def test_failover_promotes_then_moves_the_name(aurora_fresh: AuroraCluster, bed: Bed) -> None:
    cluster = aurora_fresh
    with connect(cluster, bed, CLUSTER) as conn:
        conn.execute("CREATE TABLE marks (n int)")
        conn.execute("INSERT INTO marks VALUES (1)")

    promoted = cluster.fail_over(dns_delay=2.0)
    assert cluster.writer() == "aurora-pg-2"
    assert resolves(CLUSTER) == cluster.address("aurora-pg-1")  # DNS lags the promotion
    assert resolves(READER) == cluster.address("aurora-pg-3")
    with connect(cluster, bed, instance_host("aurora-pg-2")) as conn:
        assert one(conn, "SELECT pg_is_in_recovery()") is False
        assert one(conn, "SELECT count(*) FROM marks") == 1  # the acknowledged commit survived
        rows = conn.execute(
            "SELECT server_id, session_id = %s FROM aurora_replica_status() "
            "ORDER BY session_id = %s DESC, last_update_timestamp DESC",
            (MASTER_SESSION_ID, MASTER_SESSION_ID),
        ).fetchall()
        assert rows[0] == ("aurora-pg-2", True)  # the newest writer row
        assert sorted(server_id for server_id, _ in rows) == list(SERVER_IDS)  # none dropped
        conn.execute("INSERT INTO marks VALUES (2)")
    with connect(cluster, bed, instance_host("aurora-pg-3")) as conn:
        procs.wait_until(
            lambda: one(conn, "SELECT count(*) FROM marks") == 2,
            "aurora-pg-3 replaying the new writer's insert",
            None,
            timeout=10,
        )

    procs.wait_until(
        lambda: resolves(CLUSTER) == cluster.address("aurora-pg-2"),
        "the cluster name moving",
        None,
        timeout=10,
    )
    assert time.monotonic() - promoted >= 2.0

    # The old writer started as it was: two writers, and the status says so.
    cluster.start_node("aurora-pg-1")
    with connect(cluster, bed, instance_host("aurora-pg-3")) as conn:
        writers = conn.execute(
            "SELECT server_id FROM aurora_replica_status() WHERE session_id = %s "
            "ORDER BY server_id",
            (MASTER_SESSION_ID,),
        ).fetchall()
    assert writers == [("aurora-pg-1",), ("aurora-pg-2",)]


def test_a_paused_reader_lags_a_stopped_one_goes_stale(
    aurora_fresh: AuroraCluster, bed: Bed
) -> None:
    cluster = aurora_fresh
    with connect(cluster, bed, CLUSTER) as writer:

        def status(server_id: str) -> tuple[float, datetime.datetime]:
            row = writer.execute(
                "SELECT coalesce(replica_lag_in_msec, 0), last_update_timestamp "
                "FROM aurora_replica_status() WHERE server_id = %s",
                (server_id,),
            ).fetchone()
            assert row is not None
            return row[0], row[1]

        def write_then_lag_above_a_second() -> bool:
            writer.execute("INSERT INTO lag_marks VALUES (1)")
            return status("aurora-pg-3")[0] > 1000

        writer.execute("CREATE TABLE lag_marks (n int)")
        procs.wait_until(lambda: status("aurora-pg-3")[0] == 0, "aurora-pg-3 caught up", None)
        cluster.pause_replay("aurora-pg-3")
        procs.wait_until(write_then_lag_above_a_second, "aurora-pg-3 lagging", None)
        assert status("aurora-pg-2")[0] < 1000
        cluster.resume_replay("aurora-pg-3")
        procs.wait_until(lambda: status("aurora-pg-3")[0] == 0, "aurora-pg-3 catching up", None)

        # A stopped instance keeps its row; only its timestamp ages.
        cluster.stop_node("aurora-pg-3")
        procs.wait_until(
            lambda: (
                status("aurora-pg-2")[1] - status("aurora-pg-3")[1] > datetime.timedelta(seconds=1)
            ),
            "aurora-pg-3's row ageing",
            None,
        )
        cluster.start_node("aurora-pg-3")
        assert status("aurora-pg-2")[1] - status("aurora-pg-3")[1] < datetime.timedelta(seconds=1)


def test_overridden_status_is_what_every_instance_says(
    aurora_fresh: AuroraCluster, bed: Bed
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)

    def row(server_id: str, writer: bool) -> StatusRow:
        session = MASTER_SESSION_ID if writer else f"session-{server_id}"
        return StatusRow(
            server_id=server_id,
            session_id=session,
            replica_lag_in_msec=0.0,
            last_update_timestamp=now,
            cpu=1.0,
        )

    lies = [
        [row("aurora-pg-1", True), row("db.attacker.example", False)],  # outside the domain
        [],  # no topology at all
        [row("aurora-pg-1", True), row("aurora-pg-2", True)],  # two writers
    ]
    for rows in lies:
        aurora_fresh.override_status(rows)
        for server_id in SERVER_IDS:
            with connect(aurora_fresh, bed, instance_host(server_id)) as conn:
                said = conn.execute(STATUS).fetchall()
            assert said == sorted(tuple(r.values()) for r in rows)
    aurora_fresh.override_status(None)
    with connect(aurora_fresh, bed, CLUSTER) as conn:
        assert [r[0] for r in conn.execute(STATUS)] == list(SERVER_IDS)


def test_aws_wrapper_fails_over_before_dns_moves(aurora_fresh: AuroraCluster, bed: Bed) -> None:
    """The AWS Advanced Python Wrapper's failover_v2 finds the new writer by topology."""
    aws = pytest.importorskip("aws_advanced_python_wrapper")
    from aws_advanced_python_wrapper.errors import FailoverSuccessError  # type: ignore[import-untyped]

    cluster = aurora_fresh
    conn = aws.AwsWrapperConnection.connect(
        psycopg.Connection.connect,
        host=CLUSTER,
        port=cluster.port,
        dbname="app",
        user=APP_USER,
        password=APP_PASSWORD,
        sslmode="verify-full",
        sslrootcert=str(bed.pki.ca),
        gssencmode="disable",
        connect_timeout=5,
        autocommit=True,
        plugins="failover_v2",
        cluster_instance_host_pattern=f"?.{DOMAIN}",
    )

    def instance() -> str:
        cursor = conn.cursor()  # a cursor from before a failover is unusable after it
        cursor.execute("SELECT aurora_db_instance_identifier()")
        return str(cursor.fetchone()[0])

    try:
        assert instance() == "aurora-pg-1"
        promoted = cluster.fail_over(dns_delay=30.0)
        with pytest.raises(FailoverSuccessError):
            instance()
        assert time.monotonic() - promoted < 10.0
        assert instance() == "aurora-pg-2"
        assert resolves(CLUSTER) == cluster.address("aurora-pg-1")
    finally:
        conn.close()
        aws.release_resources()

    # Until DNS moves, the cluster name leads to the old writer, back as a reader.
    cluster.restore_as_reader("aurora-pg-1")
    with connect(cluster, bed, CLUSTER) as plain:
        assert one(plain, "SELECT aurora_db_instance_identifier()") == "aurora-pg-1"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            plain.execute("CREATE TABLE refused (n int)")


def test_hosts_point_rewrites_in_place(tmp_path: Path) -> None:
    """A name's line keeps its place and length: the inode and size never change."""
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost")
    hosts = Hosts(path)
    hosts.point("db.example", "127.0.10.1")
    before = path.stat()
    hosts.point("db.example", "127.0.10.22")
    hosts.point("db.example", "10.0.0.3")
    after = path.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    assert path.read_text() == "127.0.0.1 localhost\n10.0.0.3        db.example\n"
