"""An Aurora PostgreSQL cluster emulated on loopback: three instances, one writer.

Each instance is a TLS-only PostgreSQL 15 node on an address of its own (127.0.10.1,
.2, .3) and one common port, as Aurora's instances share theirs. Aurora's names resolve
through the private /etc/hosts (`bed.names`): the instance endpoints, the cluster
endpoint (the writer's address) and the reader endpoint (a reader's). Each certificate
names the instance, cluster and reader endpoints, as an RDS certificate does.

Aurora keeps one copy of the data on shared storage; here node 1 starts as the writer,
`aurora-pg-2` streams from it synchronously (so a commit acknowledged by the writer
survives its promotion) and `aurora-pg-3` asynchronously (it becomes the synchronous one
only while aurora-pg-2 is down, so that commits go on). Aurora's functions exist in
`pg_catalog` of the `postgres` and `app` databases:

- `aurora_db_instance_identifier()`: the instance's `cluster_name`, its server id.
- `aurora_replica_status()`: Aurora's columns; `server_id`, `session_id`,
  `last_update_timestamp`, `replica_lag_in_msec` and `cpu` are filled, the rest NULL.
  Every instance reads one status file, as every Aurora instance sees the one storage
  volume's view: a status agent (a thread) probes the instances about every 0.25 s and
  writes it. An instance that stops answering keeps its last row, whose timestamp ages.
- `pg_settings` shows `rds.extensions` (with `aurora_stat_utils`): PostgreSQL hides
  placeholder settings from that view, and the AWS wrapper detects Aurora by that row.

`fail_over` stops the writer at once and promotes a reader; the cluster name follows
only after a DNS delay, as Aurora's does.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import quote

import psycopg

from bed import certs, procs
from bed.certs import Pki
from bed.names import Hosts
from bed.postgres import DATABASE, OS_USER, Postgres

DOMAIN = f"xyz789.{certs.REGION}.rds.amazonaws.com"
CLUSTER = f"aurora-pg.cluster-{DOMAIN}"
READER = f"aurora-pg.cluster-ro-{DOMAIN}"
SERVER_IDS = ("aurora-pg-1", "aurora-pg-2", "aurora-pg-3")
ADDRESSES = dict(zip(SERVER_IDS, ("127.0.10.1", "127.0.10.2", "127.0.10.3"), strict=True))
WRITER, SYNC_STANDBY = SERVER_IDS[0], SERVER_IDS[1]  # at start and after `rebuild`
MASTER_SESSION_ID = "MASTER_SESSION_ID"
RDS_EXTENSIONS = "aurora_stat_utils"
SUPERUSER = "postgres"
STATUS_PERIOD = 0.25
FOLLOW_TIMEOUT = 5.0  # for a reader to stream from a new writer, before it is copied afresh


def instance_host(server_id: str) -> str:
    """The instance endpoint of `server_id`, as RDS names it."""
    return f"{server_id}.{DOMAIN}"


def node_conf(server_id: str) -> str:
    """Settings of one instance. The writer keeps WAL for readers copied before it last
    restarted (`rebuild` starts all from copies); a re-pointed reader retries quickly."""
    return f"""
cluster_name = '{server_id}'
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 200ms
hot_standby_feedback = on
wal_keep_size = 128MB
rds.extensions = '{RDS_EXTENSIONS}'
"""


class StatusRow(TypedDict):
    """What the status file holds of one instance's `aurora_replica_status()` row."""

    server_id: str
    session_id: str
    replica_lag_in_msec: float | None
    last_update_timestamp: datetime.datetime | None
    cpu: float


# Aurora's columns, in its order; only those of StatusRow come from the status file.
STATUS_COLUMNS = (
    ("server_id", "text"),
    ("session_id", "text"),
    ("durable_lsn", "bigint"),
    ("highest_lsn_rcvd", "bigint"),
    ("current_read_lsn", "bigint"),
    ("cur_replay_latency_in_usec", "bigint"),
    ("active_txns", "integer"),
    ("is_current", "boolean"),
    ("last_transport_error", "integer"),
    ("last_error_timestamp", "timestamptz"),
    ("last_update_timestamp", "timestamptz"),
    ("feedback_xmin", "bigint"),
    ("feedback_epoch", "integer"),
    ("replica_lag_in_msec", "float8"),
    ("log_stream_speed_in_kib_per_second", "float8"),
    ("log_buffer_sequence_number", "bigint"),
    ("oldest_read_view_trx_id", "bigint"),
    ("oldest_read_view_lsn", "bigint"),
    ("pending_read_ios", "integer"),
    ("read_ios", "bigint"),
    ("iops", "integer"),
    ("cpu", "float8"),
)


def aurora_sql(status_file: Path) -> str:
    """Aurora's functions, and the `rds.extensions` row of pg_settings, for one database."""
    filled = [(c, t) for c, t in STATUS_COLUMNS if c in StatusRow.__annotations__]
    select = ", ".join(f"r.{c}" if (c, t) in filled else f"NULL::{t}" for c, t in STATUS_COLUMNS)
    return f"""
CREATE FUNCTION pg_catalog.aurora_db_instance_identifier() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT pg_catalog.current_setting('cluster_name') $$;

CREATE FUNCTION pg_catalog.aurora_replica_status(
    {", ".join(f"OUT {c} {t}" for c, t in STATUS_COLUMNS)}
) RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
SELECT {select}
FROM json_to_recordset(coalesce(pg_read_file('{status_file}', 0, 1048576, true), '[]')::json)
    AS r({", ".join(f"{c} {t}" for c, t in filled)})
$$;

CREATE OR REPLACE VIEW pg_catalog.pg_settings AS
SELECT a.* FROM pg_catalog.pg_show_all_settings() a
UNION ALL
SELECT 'rds.extensions', s, NULL, 'Customized Options', 'Extensions of RDS', NULL,
    'sighup', 'string', 'configuration file', NULL, NULL, NULL, NULL, s, NULL, NULL, false
FROM pg_catalog.current_setting('rds.extensions', true) AS s WHERE s IS NOT NULL;
"""


PROBE = """
SELECT pg_catalog.current_setting('cluster_name'),
    pg_catalog.pg_is_in_recovery(),
    CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN 0
        WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn() THEN 0
        ELSE 1000 * extract(epoch FROM
            pg_catalog.clock_timestamp() - pg_catalog.pg_last_xact_replay_timestamp())
    END::float8,
    pg_catalog.clock_timestamp()
"""


def query(node: Postgres, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` on `node` as the superuser, over its local socket."""
    with psycopg.connect(
        host=str(node.sockets),
        port=node.port,
        user=SUPERUSER,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    ) as conn:
        cursor = conn.execute(sql.encode())
        return cursor.fetchall() if cursor.description else []


class StatusAgent:
    """Probes every running instance and writes the status file all of them read.

    One persistent connection per instance, opened again after the instance restarts.
    While `override` is set, its rows are written instead of what the probes found.
    """

    def __init__(self, nodes: list[Postgres], path: Path) -> None:
        self.nodes, self.path = nodes, path
        self.rows: dict[str, StatusRow] = {}
        self.override: list[StatusRow] | None = None
        self.rounds = 0
        self._conns: dict[str, psycopg.Connection[tuple[Any, ...]]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aurora-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for conn in self._conns.values():
            conn.close()

    def settle(self) -> None:
        """Return once the file shows the instances as they are now: two rounds later."""
        target = self.rounds + 2
        procs.wait_until(lambda: self.rounds >= target, "aurora status agent", None)

    def _run(self) -> None:
        while not self._stopping.is_set():
            answered = set()
            for node in self.nodes:
                row = self._probe(node)
                if row is not None:
                    self.rows[row["server_id"]] = row
                    answered.add(row["server_id"])
            self._demote_silent_writers(answered)
            self._write()
            self.rounds += 1
            self._stopping.wait(STATUS_PERIOD)

    def _demote_silent_writers(self, answered: set[str]) -> None:
        """A writer that stopped answering keeps its last row, but not the writer's session
        once another instance answers as the writer: Aurora shows one writer."""
        if not any(self.rows[i]["session_id"] == MASTER_SESSION_ID for i in answered):
            return
        for server_id, row in self.rows.items():
            if server_id not in answered and row["session_id"] == MASTER_SESSION_ID:
                self.rows[server_id] = {**row, "session_id": _session_id(server_id)}

    def _probe(self, node: Postgres) -> StatusRow | None:
        conn = self._conns.pop(node.name, None)
        if not node.running:
            if conn is not None:
                conn.close()
            return None
        try:
            if conn is None:
                conn = psycopg.connect(
                    host=str(node.sockets),
                    port=node.port,
                    user=SUPERUSER,
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=2,
                    application_name="aurora-status",
                )
            found = conn.execute(PROBE.encode()).fetchone()
        except psycopg.Error:
            if conn is not None:
                conn.close()
            return None
        self._conns[node.name] = conn
        assert found is not None
        server_id, in_recovery, lag, now = found
        return StatusRow(
            server_id=server_id,
            session_id=_session_id(server_id) if in_recovery else MASTER_SESSION_ID,
            replica_lag_in_msec=lag,
            last_update_timestamp=now,
            cpu=1.0,
        )

    def _write(self) -> None:
        rows = self.override if self.override is not None else list(self.rows.values())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, default=datetime.datetime.isoformat))
        tmp.chmod(0o644)  # read by the server processes, run as the postgres OS user
        tmp.replace(self.path)


def _session_id(server_id: str) -> str:
    """A reader's session id: a UUID, as Aurora gives, fixed per instance."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, instance_host(server_id)))


def common_port() -> int:
    """A port nobody listens on at any of the instance addresses, right now."""
    first, *others = ADDRESSES.values()
    for _ in range(20):
        with contextlib.ExitStack() as held:
            probe = held.enter_context(socket.socket())
            probe.bind((first, 0))
            port = int(probe.getsockname()[1])
            try:
                for address in others:
                    held.enter_context(socket.socket()).bind((address, port))
            except OSError:
                continue
            return port
    raise procs.BedError("no port free on all of the Aurora instance addresses")


class AuroraCluster:
    """Three PostgreSQL instances behind Aurora's names, controlled like a failing cluster.

    Every control method returns once its change is done and the status file shows it.
    """

    def __init__(self, root: Path, pki: Pki, pam_service: str, hosts: Hosts) -> None:
        root.mkdir(mode=0o755)
        self.root, self.hosts = root, hosts
        self.port = common_port()
        self.nodes: dict[str, Postgres] = {}
        for server_id, address in ADDRESSES.items():
            names = (address, instance_host(server_id), CLUSTER, READER)
            self.nodes[server_id] = Postgres(
                root,
                server_id,
                certs.issue(pki, server_id, OS_USER, *names),
                pki.ca,
                pam_service,
                host=address,
                port=self.port,
                network="127.0.0.0/8",
                conf=node_conf(server_id),
            )
        self._writer = WRITER
        self._agent = StatusAgent(list(self.nodes.values()), root / "status.json")
        self._timer: threading.Timer | None = None
        self._changed = False

    @property
    def endpoints(self) -> list[str]:
        """Every name a client may connect to: cluster, reader and instance endpoints."""
        return [CLUSTER, READER, *map(instance_host, SERVER_IDS)]

    def writer(self) -> str:
        """The server id of the current writer (the one promoted last)."""
        return self._writer

    def address(self, server_id: str) -> str:
        return ADDRESSES[server_id]

    def url(
        self, user: str, password: str | None = None, host: str = CLUSTER, dbname: str = DATABASE
    ) -> str:
        secret = "" if password is None else f":{quote(password, safe='')}"
        return f"postgresql://{quote(user, safe='')}{secret}@{host}:{self.port}/{dbname}"

    def start(self) -> AuroraCluster:
        """Make the cluster (and a copy of each instance's files, for `rebuild`), start it."""
        try:
            self._make_templates()
            self._launch()
            self._agent.start()
            self._agent.settle()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_templates(self) -> None:
        writer, *readers = self.nodes.values()
        writer.create()
        writer.start()
        writer.wait_ready()
        writer.setup_roles()
        for database in ("postgres", DATABASE):
            writer.psql(aurora_sql(self._agent.path), database=database)
        self._set_synchronous(writer)
        for reader in readers:
            reader.primary = writer
        _each(Postgres.create, readers)
        writer.stop("fast")
        (self.root / "templates").mkdir()
        _each(lambda node: _copy(node.data, self._template(node)), list(self.nodes.values()))

    def _template(self, node: Postgres) -> Path:
        return self.root / "templates" / node.name

    def _launch(self) -> None:
        """Start every instance from the files of `_make_templates`: node 1 the writer."""
        writer, *readers = self.nodes.values()
        writer.primary = None
        for reader in readers:
            reader.primary = writer
        _each(_start, list(self.nodes.values()))
        _wait_streaming(writer, readers)
        self._writer = writer.name
        for server_id, address in ADDRESSES.items():
            self.hosts.point(instance_host(server_id), address)
        self.hosts.point(CLUSTER, writer.host)
        self.hosts.point(READER, self.nodes[SYNC_STANDBY].host)
        self._changed = False

    def rebuild(self) -> None:
        """Back to the state `start` left: node 1 writer, 2 synchronous, 3 asynchronous.

        The names point as they did, an override and a pending DNS change are dropped and
        every instance's files are as they were made (tables made since are gone). Only
        the override is dropped if no control method changed an instance since.
        """
        overridden, self._agent.override = self._agent.override is not None, None
        if not self._changed:
            if overridden:
                self._agent.settle()
            return
        self._cancel_timer()
        for node in self.nodes.values():
            node.stop("immediate")

        def restore(node: Postgres) -> None:
            shutil.rmtree(node.data, ignore_errors=True)
            _copy(self._template(node), node.data)

        _each(restore, list(self.nodes.values()))
        self._launch()
        self._agent.settle()

    def fail_over(self, to: str = SYNC_STANDBY, dns_delay: float = 30.0) -> float:
        """Stop the writer at once, promote `to`, and move the cluster name after `dns_delay`.

        The other running readers follow the new writer; the reader name moves at once to
        one of them. A commit the old writer acknowledged survives if `to` was its
        synchronous standby (aurora-pg-2, after `start` or `rebuild`). Returns
        `time.monotonic()` when the promotion completed.
        """
        new = self.nodes[to]
        if to == self._writer or not new.running:
            raise procs.BedError(f"cannot fail over to {to}: it is the writer, or stopped")
        self._changed = True
        self.nodes[self._writer].stop("immediate")
        followers = [node for node in self._running_readers() if node is not new]
        # An asynchronous reader can have received WAL the new writer never got: that one
        # cannot follow the new timeline and gets a fresh copy instead.
        fork = _received(new)
        ahead = {node.name for node in followers if _received(node) > fork}
        if query(new, "SELECT pg_catalog.pg_promote(true, 30)") != [(True,)]:
            raise procs.BedError(f"{to} was not promoted within 30 s:\n{procs.tail(new.log)}")
        promoted = time.monotonic()
        new.primary, self._writer = None, to
        self._set_synchronous(new)
        _each(lambda node: _follow(node, new, fresh=node.name in ahead), followers)
        if followers:
            self.hosts.point(READER, followers[0].host)
        self._cancel_timer()
        self._timer = threading.Timer(dns_delay, self.hosts.point, (CLUSTER, new.host))
        self._timer.daemon = True
        self._timer.start()
        self._agent.settle()
        return promoted

    def restore_as_reader(self, server_id: str) -> None:
        """Bring a stopped instance (an old writer, say) back as a reader of the writer."""
        node = self.nodes[server_id]
        if node.running or server_id == self._writer:
            raise procs.BedError(f"{server_id} is running or the writer: nothing to restore")
        self._changed = True
        _follow(node, self.nodes[self._writer], fresh=True)
        self._agent.settle()

    def stop_node(self, server_id: str) -> None:
        self._changed = True
        self.nodes[server_id].stop("fast")

    def start_node(self, server_id: str) -> None:
        """Start a stopped instance as it was; a reader follows the current writer.

        An old writer comes back as a writer too: the status shows two MASTER rows.
        """
        node, writer = self.nodes[server_id], self.nodes[self._writer]
        self._changed = True
        _start(node)
        if node.primary is not None:
            _follow(node, writer, fresh=False)
        self._agent.settle()

    def pause_replay(self, server_id: str) -> None:
        """Stop applying WAL on a reader, which still receives it: its lag grows."""
        self._changed = True
        query(self.nodes[server_id], "SELECT pg_catalog.pg_wal_replay_pause()")

    def resume_replay(self, server_id: str) -> None:
        query(self.nodes[server_id], "SELECT pg_catalog.pg_wal_replay_resume()")

    def override_status(self, rows: list[StatusRow] | None) -> None:
        """Make every instance's `aurora_replica_status()` return `rows`; None: the truth."""
        self._agent.override = rows
        self._agent.settle()

    def stop(self) -> None:
        """Stop the agent, the pending DNS change and every instance, by pid."""
        self._cancel_timer()
        self._agent.stop()
        for node in self.nodes.values():
            node.stop("immediate")

    def _running_readers(self) -> list[Postgres]:
        return [n for n in self.nodes.values() if n.running and n.name != self._writer]

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @staticmethod
    def _set_synchronous(writer: Postgres) -> None:
        """The first connected reader by id is synchronous: at start aurora-pg-2."""
        others = ", ".join(f'"{n}"' for n in SERVER_IDS if n != writer.name)
        query(writer, f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({others})'")
        query(writer, "SELECT pg_catalog.pg_reload_conf()")


def _start(node: Postgres) -> None:
    node.start()
    node.wait_ready()


def _follow(node: Postgres, writer: Postgres, *, fresh: bool) -> None:
    """Make the reader `node` stream from `writer`: re-pointed, or copied afresh.

    A re-pointed reader that does not stream within FOLLOW_TIMEOUT had WAL the new
    timeline does not (an asynchronous reader ahead of the promoted one): it is copied.
    """
    node.primary = writer
    if not fresh:
        conninfo = node.replication_conninfo(writer)
        query(node, f"ALTER SYSTEM SET primary_conninfo = '{conninfo}'")
        query(node, "SELECT pg_catalog.pg_reload_conf()")
        try:
            _wait_streaming(writer, [node], FOLLOW_TIMEOUT)
            return
        except procs.BedError:
            pass
    node.stop("immediate")
    node.create()
    _start(node)
    _wait_streaming(writer, [node])


def _wait_streaming(writer: Postgres, readers: list[Postgres], timeout: float = 30.0) -> None:
    names = {reader.name for reader in readers}

    def streaming() -> bool:
        rows = query(
            writer, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
        )
        return names <= {name for (name,) in rows}

    procs.wait_until(
        streaming, f"{', '.join(sorted(names))} streaming", writer.proc, writer.log, timeout
    )


def _received(node: Postgres) -> int:
    """How far a reader's WAL goes, as a number."""
    rows = query(
        node,
        "SELECT coalesce(pg_catalog.pg_last_wal_receive_lsn(), "
        "pg_catalog.pg_last_wal_replay_lsn()) - '0/0'",
    )
    return int(rows[0][0])


def _copy(source: Path, target: Path) -> None:
    """Copy a data directory with its owner and modes."""
    procs.run_as("root", ["cp", "-a", str(source), str(target)])


def _each(step: Callable[[Postgres], None], nodes: list[Postgres]) -> None:
    """Run `step` on every node at once; raise the first failure."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(nodes))) as pool:
        for future in [pool.submit(step, node) for node in nodes]:
            future.result()
