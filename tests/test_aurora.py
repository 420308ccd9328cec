"""Aurora topology on the bed's emulated cluster: a writer flip that does not wait for DNS,
reader routing, an old writer back read-only, and topology answers that lie.

The cluster (bed/aurora.py) is three TLS-only PostgreSQL instances behind Aurora's names,
resolved through this test session's private /etc/hosts. A writer flip stops the writer,
promotes its synchronous standby and moves the cluster name 30 s later, as a slow resolver
cache would. Assertions are about order and outcome (the first commit on the new writer
comes before the DNS switch), never about how fast: the seconds are measured and shown,
and `benchmarks/` compares them with the AWS wrapper's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import securedb
from bed import aurora as cluster_names
from bed import postgres
from bed.aurora import AuroraCluster
from bed.bed import Bed
from securedb import _state
from securedb.errors import NoReaderError, TopologyError, TransactionOutcomeUnknown
from securedb.failover import failure_of

pytestmark = pytest.mark.bed

WORKERS = 8
DNS_DELAY = 30.0
INSERT = (
    "INSERT INTO flip_rows (token, instance) "
    "SELECT %s, pg_catalog.aurora_db_instance_identifier() RETURNING instance"
)
WHERE_AM_I = "SELECT pg_catalog.aurora_db_instance_identifier()"


@pytest.fixture
def cluster(aurora: AuroraCluster) -> Iterator[AuroraCluster]:
    """The emulated cluster, with a fresh table; rebuilt after a test that changed it."""
    aurora.nodes[aurora.writer()].psql(
        f"CREATE TABLE IF NOT EXISTS flip_rows (token text, instance text);"
        f"GRANT ALL ON flip_rows TO {postgres.APP_USER}, {postgres.IAM_USER};"
        "TRUNCATE flip_rows;",
        database="app",
    )
    yield aurora
    _state.reset()
    aurora.rebuild()


def password_url(cluster: AuroraCluster, host: str = cluster_names.CLUSTER) -> str:
    return cluster.url(postgres.APP_USER, postgres.APP_PASSWORD, host=host)


@dataclasses.dataclass
class Ledger:
    """What the application saw of each unit of work."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    acked: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
    in_doubt: set[str] = dataclasses.field(default_factory=set)
    errors: list[str] = dataclasses.field(default_factory=list)

    def record(self, token: str, unit: Callable[[str], str]) -> None:
        try:
            instance = unit(token)
        except TransactionOutcomeUnknown:
            with self.lock:
                self.in_doubt.add(token)
        except Exception as exc:
            with self.lock:
                self.errors.append(type(exc).__name__)
        else:
            with self.lock:
                self.acked[token] = (instance, time.monotonic())

    def first_on(self, instance: str) -> float | None:
        with self.lock:
            times = [t for i, t in self.acked.values() if i == instance]
        return min(times, default=None)

    def workers_on(self, instance: str, since: float) -> int:
        with self.lock:
            return sum(1 for i, t in self.acked.values() if i == instance and t >= since)


def flip(cluster: AuroraCluster, ledger: Ledger, enough: float) -> tuple[float, str]:
    """Let the load run, fail the writer over, and wait until the new writer has taken
    `WORKERS` commits or `enough` seconds have passed. The promotion's time and the new
    writer."""
    deadline = time.monotonic() + 10
    while not ledger.acked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger.acked, f"no unit committed before the flip: {ledger.errors}"
    time.sleep(0.5)
    promoted = cluster.fail_over(dns_delay=DNS_DELAY)
    new = cluster.writer()
    until = promoted + enough
    while ledger.workers_on(new, promoted) < WORKERS and time.monotonic() < until:
        time.sleep(0.05)
    return promoted, new


def run_threads(
    cluster: AuroraCluster,
    unit: Callable[[str], str],
    enough: float,
    done: Callable[[], None] = lambda: None,
) -> tuple[Ledger, float, str]:
    """`WORKERS` threads running `unit` through a flip; each calls `done` as it ends."""
    ledger = Ledger()
    stop = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                ledger.record(uuid.uuid4().hex, unit)
        finally:
            done()

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    try:
        promoted, new = flip(cluster, ledger, enough)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    return ledger, promoted, new


def check_rows(cluster: AuroraCluster, ledger: Ledger, new: str) -> None:
    """No acknowledged row lost, none twice, and only COMMITs lost in flight in doubt."""
    rows = cluster.nodes[new].psql("SELECT token FROM flip_rows", database="app").split()
    counts = collections.Counter(rows)
    assert not ledger.errors, f"errors reached the application: {ledger.errors}"
    assert [t for t in ledger.acked if counts[t] != 1] == []
    assert [t for t, n in counts.items() if n > 1] == []


def report(request: pytest.FixtureRequest, name: str, seconds: float | None) -> None:
    """The measured seconds from promotion to first commit, shown with -rP and in JUnit."""
    request.node.user_properties.append((name, seconds))
    print(f"{name}: {seconds if seconds is None else round(seconds, 2)} s")


def engine_unit(eng: Any) -> Callable[[str], str]:
    import sqlalchemy as sa

    statement = sa.text(INSERT.replace("%s", ":token"))

    def unit(token: str) -> str:
        return str(
            securedb.run_transaction(
                eng, lambda conn: conn.execute(statement, {"token": token}).scalar_one()
            )
        )

    return unit


def pool_unit(pool: Any) -> Callable[[str], str]:
    def unit(token: str) -> str:
        return str(
            securedb.run_transaction(
                pool, lambda conn: conn.execute(INSERT, (token,)).fetchone()[0]
            )
        )

    return unit


@pytest.mark.parametrize("entry", ["engine", "pool"])
def test_writer_flip_goes_to_the_new_writer_before_dns_moves(
    request: pytest.FixtureRequest,
    bed: Bed,
    cluster: AuroraCluster,
    aws_env: dict[str, str],
    entry: str,
) -> None:
    # IAM: every instance gets a token signed for its own name.
    url = cluster.url(postgres.IAM_USER)
    if entry == "engine":
        target: Any = securedb.engine(url, auth="iam", ca_bundle=bed.pki.ca, pool_size=WORKERS)
        unit = engine_unit(target)
    else:
        target = securedb.pool(url, auth="iam", ca_bundle=bed.pki.ca, max_size=WORKERS)
        unit = pool_unit(target)
    try:
        ledger, promoted, new = run_threads(cluster, unit, enough=DNS_DELAY / 2)
    finally:
        target.dispose() if entry == "engine" else target.close()
    check_rows(cluster, ledger, new)
    first = ledger.first_on(new)
    report(request, f"{entry}: promotion to first commit", first and first - promoted)
    assert first is not None, "no commit on the new writer"
    assert first < promoted + DNS_DELAY, "waited for the DNS switch"


def test_writer_flip_async_engine(
    request: pytest.FixtureRequest, bed: Bed, cluster: AuroraCluster
) -> None:
    import sqlalchemy as sa

    statement = sa.text(INSERT.replace("%s", ":token"))
    ledger = Ledger()

    async def load(eng: Any, stop: asyncio.Event) -> None:
        async def unit_of(token: str) -> str:
            async def body(conn: Any) -> str:
                return str((await conn.execute(statement, {"token": token})).scalar_one())

            return await securedb.run_transaction_async(eng, body)

        async def work() -> None:
            while not stop.is_set():
                token = uuid.uuid4().hex
                try:
                    instance = await unit_of(token)
                except TransactionOutcomeUnknown:
                    ledger.in_doubt.add(token)
                except Exception as exc:
                    ledger.errors.append(type(exc).__name__)
                else:
                    ledger.acked[token] = (instance, time.monotonic())

        await asyncio.gather(*(work() for _ in range(WORKERS)))

    outcome: dict[str, Any] = {}

    def drive() -> None:
        async def main() -> None:
            eng = securedb.async_engine(
                password_url(cluster), ca_bundle=bed.pki.ca, pool_size=WORKERS
            )
            stop = asyncio.Event()
            task = asyncio.create_task(load(eng, stop))
            while "done" not in outcome:
                await asyncio.sleep(0.05)
            stop.set()
            await task
            await eng.dispose()

        asyncio.run(main())

    loop_thread = threading.Thread(target=drive)
    loop_thread.start()
    try:
        promoted, new = flip(cluster, ledger, enough=DNS_DELAY / 2)
    finally:
        outcome["done"] = True
        loop_thread.join(60)
    check_rows(cluster, ledger, new)
    first = ledger.first_on(new)
    report(request, "async_engine: promotion to first commit", first and first - promoted)
    assert first is not None
    assert first < promoted + DNS_DELAY


def django_unit(alias: str) -> Callable[[str], str]:
    """A unit of work as a Django view would run it, re-run after a failover-class error
    (Django has no run_transaction: the loop is the application's)."""
    from django.db import connections

    def unit(token: str) -> str:
        for _ in range(50):
            conn = connections[alias]
            in_commit = False
            try:
                conn.set_autocommit(False)
                with conn.cursor() as cursor:
                    cursor.execute(INSERT, [token])
                    instance = str(cursor.fetchone()[0])
                in_commit = True
                conn.commit()
                conn.set_autocommit(True)
                return instance
            except Exception as exc:
                cause = exc.__cause__ or exc
                with contextlib.suppress(Exception):
                    conn.close()
                if failure_of(cause, "postgresql") is None:
                    raise
                if in_commit:
                    raise TransactionOutcomeUnknown("lost during COMMIT") from None
                time.sleep(0.05)
        raise AssertionError("the unit did not get through in 50 attempts")

    return unit


def test_writer_flip_django(
    request: pytest.FixtureRequest, bed: Bed, cluster: AuroraCluster
) -> None:
    from django.conf import settings as django_settings
    from django.db import connections

    if not django_settings.configured:
        import django

        django_settings.configure(DATABASES={}, USE_TZ=True, INSTALLED_APPS=[])
        django.setup()
    connections.settings["aurora"] = connections.configure_settings(
        {
            "default": {
                "ENGINE": "securedb.contrib.django.postgresql",
                "NAME": "app",
                "USER": postgres.APP_USER,
                "PASSWORD": postgres.APP_PASSWORD,
                "HOST": cluster_names.CLUSTER,
                "PORT": cluster.port,
                "OPTIONS": {"securedb": {"ca_bundle": str(bed.pki.ca)}},
            }
        }
    )["default"]
    # Django's connections are per thread: each worker closes its own.
    ledger, promoted, new = run_threads(
        cluster, django_unit("aurora"), enough=DNS_DELAY / 2, done=connections.close_all
    )
    check_rows(cluster, ledger, new)
    first = ledger.first_on(new)
    report(request, "django: promotion to first commit", first and first - promoted)
    assert first is not None
    assert first < promoted + DNS_DELAY


def test_without_topology_recovery_waits_for_dns(
    request: pytest.FixtureRequest, bed: Bed, cluster: AuroraCluster
) -> None:
    eng = securedb.engine(
        password_url(cluster), topology="off", ca_bundle=bed.pki.ca, pool_size=WORKERS
    )
    import sqlalchemy as sa

    statement = sa.text(INSERT.replace("%s", ":token"))

    def unit(token: str) -> str:
        return str(
            securedb.run_transaction(
                eng,
                lambda conn: conn.execute(statement, {"token": token}).scalar_one(),
                deadline=2 * DNS_DELAY,
                attempts=1000,
            )
        )

    try:
        ledger, promoted, new = run_threads(cluster, unit, enough=DNS_DELAY + 15)
    finally:
        eng.dispose()
    check_rows(cluster, ledger, new)
    first = ledger.first_on(new)
    report(request, "topology='off': promotion to first commit", first and first - promoted)
    assert first is not None
    assert first >= promoted + DNS_DELAY, "recovered before the cluster name moved"


def test_the_old_writer_back_read_only_gets_no_write(bed: Bed, cluster: AuroraCluster) -> None:
    cluster.fail_over(dns_delay=3600)
    cluster.restore_as_reader("aurora-pg-1")  # the cluster name still points at it
    assert socket.gethostbyname(cluster_names.CLUSTER) == cluster.address("aurora-pg-1")
    eng = securedb.engine(password_url(cluster), ca_bundle=bed.pki.ca)
    try:
        unit = engine_unit(eng)
        instances = {unit(uuid.uuid4().hex) for _ in range(20)}
    finally:
        eng.dispose()
    assert instances == {"aurora-pg-2"}


def where(conn: Any) -> str:
    return str(conn.execute(WHERE_AM_I).fetchone()[0])


def test_reader_connections_spread_over_the_readers(bed: Bed, cluster: AuroraCluster) -> None:
    url = password_url(cluster)
    seen = collections.Counter()
    for _ in range(100):
        with securedb.connect(url, role="reader", ca_bundle=bed.pki.ca) as conn:
            seen[where(conn)] += 1
    assert set(seen) == {"aurora-pg-2", "aurora-pg-3"}
    assert max(seen.values()) <= 60, seen


def test_the_reader_endpoint_means_a_reader(bed: Bed, cluster: AuroraCluster) -> None:
    url = password_url(cluster, host=cluster_names.READER)
    with securedb.connect(url, ca_bundle=bed.pki.ca) as conn:
        assert where(conn) in {"aurora-pg-2", "aurora-pg-3"}
    with securedb.connect(url, role="writer", ca_bundle=bed.pki.ca) as conn:
        assert where(conn) == "aurora-pg-1"


def test_a_reader_stopped_mid_load_fails_no_read(bed: Bed, cluster: AuroraCluster) -> None:
    import sqlalchemy as sa

    eng = securedb.engine(password_url(cluster), role="reader", ca_bundle=bed.pki.ca, pool_size=4)
    ledger = Ledger()
    stop = threading.Event()

    def read(token: str) -> str:
        return str(
            securedb.run_transaction(eng, lambda conn: conn.execute(sa.text(WHERE_AM_I)).scalar())
        )

    def work() -> None:
        while not stop.is_set():
            ledger.record(uuid.uuid4().hex, read)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        cluster.stop_node("aurora-pg-3")
        stopped = time.monotonic()
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        eng.dispose()
    assert ledger.errors == []
    after = {i for i, t in ledger.acked.values() if t > stopped + 0.5}
    assert after == {"aurora-pg-2"}
    before = {i for i, t in ledger.acked.values() if t < stopped}
    assert before == {"aurora-pg-2", "aurora-pg-3"}


def lag_of(cluster: AuroraCluster, server_id: str) -> float:
    rows = cluster.nodes[cluster.writer()].psql(
        "SELECT replica_lag_in_msec FROM pg_catalog.aurora_replica_status() "
        f"WHERE server_id = '{server_id}'",
        database="app",
    )
    return float(rows.strip() or "0") / 1000


def make_lag(cluster: AuroraCluster, *server_ids: str, seconds: float) -> None:
    """Pause replay on `server_ids` and write on the writer until each lags by `seconds`."""
    for server_id in server_ids:
        cluster.pause_replay(server_id)
    writer = cluster.nodes[cluster.writer()]
    deadline = time.monotonic() + 30
    while min(lag_of(cluster, s) for s in server_ids) <= seconds:
        assert time.monotonic() < deadline, "the lag did not grow"
        writer.psql("INSERT INTO flip_rows VALUES ('lag', 'lag')", database="app")
        time.sleep(0.2)


def test_a_lagging_reader_gets_no_new_connection(bed: Bed, cluster: AuroraCluster) -> None:
    make_lag(cluster, "aurora-pg-3", seconds=1.5)
    url = password_url(cluster)
    seen = collections.Counter()
    for _ in range(20):
        with securedb.connect(url, role="reader", max_lag=1, ca_bundle=bed.pki.ca) as conn:
            seen[where(conn)] += 1
    assert seen == {"aurora-pg-2": 20}


def test_with_no_healthy_reader_an_error_or_the_writer(bed: Bed, cluster: AuroraCluster) -> None:
    make_lag(cluster, "aurora-pg-2", "aurora-pg-3", seconds=1.5)
    url = password_url(cluster)
    with pytest.raises(NoReaderError) as caught:
        securedb.connect(url, role="reader", max_lag=1, ca_bundle=bed.pki.ca)
    assert "aurora-pg-2 lags by" in str(caught.value)
    assert "reader_fallback=True" in str(caught.value)
    with securedb.connect(
        url, role="reader", max_lag=1, reader_fallback=True, ca_bundle=bed.pki.ca
    ) as conn:
        assert where(conn) == "aurora-pg-1"


class Listener:
    """A TCP listener that records every connection made to it and sends nothing back."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.create_server((address, port))
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def row(server_id: str, writer: bool) -> Any:
    return {
        "server_id": server_id,
        "session_id": "MASTER_SESSION_ID" if writer else "2f0c3f7e-0000-4000-8000-000000000000",
        "replica_lag_in_msec": 0.0,
        "last_update_timestamp": None,
        "cpu": 1.0,
    }


@pytest.mark.parametrize(
    ("lie", "says"),
    [
        ([row("evil.attacker.example", True), row("aurora-pg-1", False)], "evil.attacker"),
        ([row("aurora-pg-1", False), row("aurora-pg-9.attacker.example", True)], "attacker"),
        ([], "is empty"),
        ([row("aurora-pg-1", True), row("aurora-pg-2", True)], "2 writers"),
    ],
)
def test_a_topology_that_lies_is_an_error_and_nothing_goes_to_what_it_names(
    bed: Bed, cluster: AuroraCluster, lie: list[Any], says: str
) -> None:
    # Every name the lie could lead to resolves to a recording listener.
    trap = Listener("127.0.10.9", cluster.port)
    for name in ("evil.attacker.example", "aurora-pg-9.attacker.example"):
        cluster.hosts.point(name, "127.0.10.9")
    for name in (f"evil.attacker.example.{cluster_names.DOMAIN}",):
        cluster.hosts.point(name, "127.0.10.9")
    try:
        cluster.override_status(lie)
        with pytest.raises(TopologyError) as caught:
            securedb.connect(password_url(cluster), ca_bundle=bed.pki.ca)
    finally:
        trap.close()
    assert says in str(caught.value)
    assert "topology='off'" in str(caught.value)
    assert trap.accepted == 0


def test_asyncpg_routes_by_the_topology_too(bed: Bed, cluster: AuroraCluster) -> None:
    pytest.importorskip("asyncpg")
    url = password_url(cluster).replace("postgresql://", "postgresql+asyncpg://")

    async def where_async(**options: Any) -> str:
        conn = await securedb.async_connect(url, ca_bundle=str(bed.pki.ca), **options)
        try:
            return str(await conn.fetchval(WHERE_AM_I))
        finally:
            await conn.close()

    async def main() -> tuple[list[str], collections.Counter[str]]:
        writers = [await where_async() for _ in range(3)]
        readers = collections.Counter([await where_async(role="reader") for _ in range(10)])
        return writers, readers

    writers, readers = asyncio.run(main())
    assert writers == ["aurora-pg-1"] * 3
    assert readers == {"aurora-pg-2": 5, "aurora-pg-3": 5}
