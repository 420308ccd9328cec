"""OpenTelemetry: securedb's metrics and spans on the bed, read back through the SDK's
in-memory exporters, and nothing secret in any of them."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg_pool
import pytest
import sqlalchemy as sa
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import securedb
from bed import postgres
from bed.bed import Bed
from securedb import _otel
from securedb.config import Config
from securedb.connector import Connector
from tests.test_refresh_failing import Clock, Watched, no_aws_credentials

pytestmark = pytest.mark.bed

SPANS = InMemorySpanExporter()
# Deltas: each collection holds what happened since the last, whatever ran before.
READER = InMemoryMetricReader(
    preferred_temporality={
        Counter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA,
    }
)
COLLECTED: list[Any] = []  # this test's collections


@pytest.fixture(scope="module", autouse=True)
def providers() -> None:
    """The process's providers, set once (OpenTelemetry refuses a second)."""
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(tracing)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    READER.get_metrics_data()  # what earlier tests recorded is not this test's
    COLLECTED.clear()
    SPANS.clear()
    yield
    SPANS.clear()


def points(name: str, data: Any) -> list[Any]:
    return [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def gauge(name: str) -> list[Any]:
    """The gauge's observations now."""
    COLLECTED.append(READER.get_metrics_data())
    return points(name, COLLECTED[-1])


def totals(name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    """A counter's sum (a histogram's count) per attribute set, over this whole test."""
    COLLECTED.append(READER.get_metrics_data())
    summed: dict[tuple[tuple[str, Any], ...], float] = {}
    for data in COLLECTED:
        for point in points(name, data):
            key = tuple(sorted(point.attributes.items()))
            summed[key] = summed.get(key, 0) + getattr(point, "value", getattr(point, "count", 0))
    return summed


def spans(name: str) -> list[Any]:
    return [s for s in SPANS.get_finished_spans() if s.name == name]


def iam_url(bed: Bed) -> str:
    return f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"


def test_a_new_connection_and_its_credential(bed: Bed, aws_env: dict[str, str]) -> None:
    eng = securedb.engine(iam_url(bed), auth="iam", ca_bundle=str(bed.pki.ca))
    with eng.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    eng.dispose()

    [fetch] = spans("securedb credential fetch")
    assert fetch.attributes["securedb.credential.source"] == "iam"
    [connect] = spans("securedb connect")
    assert dict(connect.attributes) == {
        "db.system.name": "postgresql",
        "server.address": "localhost",
        "server.port": bed.primary.port,
        "db.namespace": "app",
        "securedb.auth.mode": "iam",
    }
    children = [s for s in SPANS.get_finished_spans() if s.parent is not None]
    assert sorted(s.name for s in children) == ["securedb credential", "securedb tls and login"]
    assert {s.parent.span_id for s in children} == {connect.context.span_id}
    assert connect.start_time <= children[0].start_time <= connect.end_time
    success = (("securedb.credential.source", "iam"), ("securedb.outcome", "success"))
    assert totals("securedb.credential.fetches") == {success: 1}
    assert totals("securedb.credential.fetch.duration") == {success: 1}


def test_a_refresh_that_keeps_failing(
    bed: Bed, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expiry gauge falls while the failure counter rises, until an alert can fire."""
    cfg = Config.from_url(
        iam_url(bed), auth="iam", ca_bundle=str(bed.pki.ca), iam_token_ttl=60, refresh="lazy"
    )
    with Connector(cfg) as connector:
        clock, cache = Clock(), connector.cache
        watched = Watched(cache.source)
        cache.source, cache._clock, watched.source._clock = watched, clock, clock
        connector.connect().close()
        [first] = gauge("securedb.credential.expires_in")
        no_aws_credentials(monkeypatch)
        clock.now = cache._value.refresh_at + 1  # type: ignore[union-attr]
        connector.connect().close()  # served the valid token; the lazy refresh failed
        [later] = gauge("securedb.credential.expires_in")
        clock.now += 5  # past the backoff
        connector.connect().close()
        [last] = gauge("securedb.credential.expires_in")
    assert first.value > later.value > last.value > 0
    assert first.attributes["securedb.credential.source"] == "iam"
    source = ("securedb.credential.source", "iam")
    failure = (("error.type", "CredentialsError"), source, ("securedb.outcome", "failure"))
    assert totals("securedb.credential.fetches") == {
        (source, ("securedb.outcome", "success")): 1,
        failure: 2,
    }


def test_the_expiry_gauge_observes_only_credentials_that_expire(
    bed: Bed, aws_env: dict[str, str]
) -> None:
    """A password (or a secret) has no expiry: an infinite observation would be dropped
    by the SDK with a warning at every collection, so it is not made."""
    password = f"postgresql://app_user:{postgres.APP_PASSWORD}@localhost:{bed.primary.port}/app"
    with (
        Connector(Config.from_url(password, ca_bundle=str(bed.pki.ca))) as static,
        Connector(Config.from_url(iam_url(bed), auth="iam", ca_bundle=str(bed.pki.ca))) as iam,
    ):
        static.connect().close()
        iam.connect().close()
        observed = {
            o.attributes["securedb.credential.name"]: o.value for o in _otel._expiries(None)
        }
        password_name, token_name = static.cache.source.name, iam.cache.source.name
    assert password_name not in observed
    assert 0 < observed[token_name] <= 900, observed


def test_a_writer_flip_records_retries_and_the_recovery(bed: Bed) -> None:
    """A connection dropped under run_transaction: a retry event on its span, a retry by
    failure kind, a detected failover, and the time to the next good connection."""
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    url = f"postgresql://app_user:{postgres.APP_PASSWORD}@localhost:{fwd.port}/app"
    eng = securedb.engine(url, ca_bundle=str(bed.pki.ca), pool_size=1)
    attempts = []

    def work(conn: sa.Connection) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            fwd.drop()  # the connection is lost mid-transaction
        return int(conn.execute(sa.text("SELECT 1")).scalar_one())

    try:
        assert securedb.run_transaction(eng, work) == 1
    finally:
        eng.dispose()
    [span] = spans("securedb run_transaction")
    [event] = span.events
    assert (event.name, event.attributes["securedb.failure"]) == ("retry", "FAILOVER")
    retry = (("securedb.failure", "FAILOVER"), ("securedb.operation", "run_transaction"))
    assert totals("securedb.transaction.retries") == {retry: 1}
    where = (("server.address", "localhost"),)
    assert totals("securedb.failover.detected") == {where: 1}
    assert totals("securedb.failover.recovery") == {where: 1}


def test_nothing_secret_in_any_span_or_metric(
    bed: Bed, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every name, attribute, event and label, after IAM, a secret and a refusal."""
    with Connector(Config.from_url(iam_url(bed), auth="iam", ca_bundle=str(bed.pki.ca))) as iam:
        iam.connect().close()
        token = iam.cache.get().password
    wrong = f"postgresql://app_user:not-{postgres.APP_PASSWORD}@localhost:{bed.primary.port}/app"
    with pytest.raises(securedb.errors.AuthenticationError):
        securedb.connect(wrong, ca_bundle=str(bed.pki.ca))
    secrets = [token, postgres.APP_PASSWORD, aws_env["AWS_SECRET_ACCESS_KEY"]]

    texts: list[str] = []
    for span in SPANS.get_finished_spans():
        texts += [span.name, repr(dict(span.attributes or {})), repr(span.status)]
        texts += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
    data = READER.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                texts.append(metric.name)
                texts += [repr(dict(p.attributes or {})) for p in metric.data.data_points]
    seen = "\n".join(texts)
    assert "securedb.auth.refusals" in seen
    assert "securedb connect" in seen
    assert [s for s in secrets if s in seen] == []


def test_without_the_api_nothing_is_imported_or_recorded() -> None:
    """No instruments, and the pools are SQLAlchemy's and psycopg_pool's as they come."""
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import securedb\n"
        "securedb.Config.from_url('postgresql://u@h/db', auth='iam')\n"
        "assert 'opentelemetry' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
        "from securedb import _otel\n"
        "assert _otel._instruments() is None\n"
        "_otel.refused(securedb.Config.from_url('postgresql://u@h/db', auth='iam'))\n"
        "import sqlalchemy\n"
        "eng = securedb.engine('postgresql://u:p@h/db')\n"
        "assert type(eng.pool) is sqlalchemy.pool.QueuePool, type(eng.pool).__mro__\n"
        "assert securedb.pool('postgresql://u:p@h/db', open=False)._securedb_metrics is None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


POOL_NAME = "db.client.connection.pool.name"
ONE = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.5}  # an engine of one connection
ONE_POOL = {"max_size": 1, "timeout": 0.5}


class Pool:
    """A securedb pool of one connection, whatever its kind, driven from the event loop:
    a sync pool's calls run in threads, so a second request can wait in one."""

    def __init__(self, kind: str, target: Any, timeout: type[BaseException]) -> None:
        self.kind, self.target, self.timeout = kind, target, timeout

    async def get(self) -> Any:
        target = self.target
        if self.kind == "engine":
            return await asyncio.to_thread(target.connect)
        if self.kind == "pool":
            return await asyncio.to_thread(target.getconn)
        if self.kind == "async_engine":
            return await target.connect()
        if self.kind == "async_pool":
            return await target.getconn()
        return await target.acquire(timeout=0.5)

    async def put(self, conn: Any) -> None:
        if self.kind == "engine":
            await asyncio.to_thread(conn.close)
        elif self.kind == "pool":
            await asyncio.to_thread(self.target.putconn, conn)
        elif self.kind == "async_engine":
            await conn.close()
        elif self.kind == "async_pool":
            await self.target.putconn(conn)
        else:
            await self.target.release(conn)


@contextlib.asynccontextmanager
async def one_connection_pool(kind: str, url: str, ca: str) -> AsyncIterator[Pool]:
    if kind == "engine":
        eng = securedb.engine(url, ca_bundle=ca, pool_logging_name="orders", **ONE)
        try:
            yield Pool(kind, eng, sa.exc.TimeoutError)
        finally:
            eng.dispose()
    elif kind == "async_engine":
        async_eng = securedb.async_engine(url, ca_bundle=ca, **ONE)
        try:
            yield Pool(kind, async_eng, sa.exc.TimeoutError)
        finally:
            await async_eng.dispose()
    elif kind == "pool":
        with securedb.pool(url, ca_bundle=ca, name="orders", **ONE_POOL) as pool:
            yield Pool(kind, pool, psycopg_pool.PoolTimeout)
    elif kind == "async_pool":
        async with securedb.async_pool(url, ca_bundle=ca, **ONE_POOL) as async_pool:
            yield Pool(kind, async_pool, psycopg_pool.PoolTimeout)
    else:
        async with securedb.async_pool(url, ca_bundle=ca, driver="asyncpg", max_size=1) as pg:
            yield Pool(kind, pg, asyncio.TimeoutError)


def by_state(name: str) -> dict[str, int]:
    """The pool's connection count per state, now."""
    return {
        p.attributes["db.client.connection.state"]: p.value
        for p in gauge("db.client.connection.count")
        if p.attributes[POOL_NAME] == name
    }


def pending(name: str) -> int:
    [point] = [
        p for p in gauge("db.client.connection.pending_requests") if p.attributes[POOL_NAME] == name
    ]
    return int(point.value)


def url_and_name(bed: Bed, kind: str) -> tuple[str, str]:
    """A URL through a forwarder of this test's own, and the pool's name in the metrics:
    the one given to an engine or a psycopg pool, else the URL's ``host:port/dbname``."""
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    url = f"postgresql://app_user:{postgres.APP_PASSWORD}@localhost:{fwd.port}/app"
    return url, "orders" if kind in ("engine", "pool") else f"localhost:{fwd.port}/app"


@pytest.mark.parametrize("kind", ["engine", "pool", "async_engine", "async_pool", "asyncpg"])
def test_pool_metrics_under_the_conventions_names(bed: Bed, kind: str) -> None:
    """One connection held, a second request waiting for it, then one timing out: the
    counts by state, the pending request, and the times and timeout, for every kind."""
    url, name = url_and_name(bed, kind)

    async def scenario() -> tuple[dict[str, int], int, dict[str, int], int]:
        async with one_connection_pool(kind, url, str(bed.pki.ca)) as pool:
            held = await pool.get()
            waiting = asyncio.ensure_future(pool.get())
            deadline = time.monotonic() + 10
            while pending(name) == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            busy, waiters = by_state(name), pending(name)
            await pool.put(held)
            await pool.put(await waiting)
            held = await pool.get()
            with pytest.raises(pool.timeout):
                await pool.get()
            await pool.put(held)
            return busy, waiters, by_state(name), pending(name)

    busy, waiters, after, left = asyncio.run(scenario())
    assert (busy, waiters) == ({"idle": 0, "used": 1}, 1)
    assert (after, left) == ({"idle": 1, "used": 0}, 0)
    attributes = ((POOL_NAME, name),)
    assert totals("db.client.connection.wait_time") == {attributes: 3}
    assert totals("db.client.connection.use_time") == {attributes: 3}
    assert totals("db.client.connection.timeouts") == {attributes: 1}
    assert totals("db.client.connection.create_time")[attributes] >= 1


@pytest.mark.parametrize("kind", ["engine", "pool", "async_engine", "async_pool", "asyncpg"])
def test_a_closed_pool_counts_no_connection(bed: Bed, kind: str) -> None:
    """Closed but not yet collected, a pool no longer adds to its name's counts (psycopg_pool
    still reports the connections it closed as its size)."""
    url, name = url_and_name(bed, kind)

    async def scenario() -> tuple[Pool, dict[str, int]]:
        async with one_connection_pool(kind, url, str(bed.pki.ca)) as pool:
            await pool.put(await pool.get())
            open_counts = by_state(name)
        return pool, open_counts

    pool, open_counts = asyncio.run(scenario())
    assert open_counts == {"idle": 1, "used": 0}
    assert by_state(name) == {"idle": 0, "used": 0}, pool.target  # still referenced


def test_driver_instrumentation_still_traces_queries(bed: Bed) -> None:
    """opentelemetry-instrumentation-psycopg on securedb's connections: a span per query
    from `connect`, `engine` and `pool` alike (securedb adds none of its own)."""
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    url = f"postgresql://app_user:{postgres.APP_PASSWORD}@localhost:{bed.primary.port}/app"
    ca = str(bed.pki.ca)
    instrumentor = PsycopgInstrumentor()
    instrumentor.instrument(skip_dep_check=True)
    try:
        with securedb.connect(url, ca_bundle=ca) as conn:
            conn.execute("SELECT 1 AS from_connect")
        eng = securedb.engine(url, ca_bundle=ca)
        with eng.connect() as sa_conn:
            sa_conn.execute(sa.text("SELECT 2 AS from_engine"))
        eng.dispose()
        with securedb.pool(url, ca_bundle=ca) as pool, pool.connection() as pooled:
            pooled.execute("SELECT 3 AS from_pool")
    finally:
        instrumentor.uninstrument()
    queries = {
        s.attributes["db.statement"]: s.attributes["db.system"]
        for s in SPANS.get_finished_spans()
        if s.attributes and "db.statement" in s.attributes
    }
    for statement in (
        "SELECT 1 AS from_connect",
        "SELECT 2 AS from_engine",
        "SELECT 3 AS from_pool",
    ):
        assert queries.get(statement) == "postgresql", sorted(queries)
    ours = {s.name for s in SPANS.get_finished_spans() if s.name.startswith("securedb")}
    connecting = {"securedb connect", "securedb credential", "securedb tls and login"}
    assert ours == {*connecting, "securedb credential fetch"}
