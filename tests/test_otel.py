"""OpenTelemetry: securedb's metrics and spans on the bed, read back through the SDK's
in-memory exporters, and nothing secret in any of them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

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
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import securedb\n"
        "securedb.Config.from_url('postgresql://u@h/db', auth='iam')\n"
        "assert 'opentelemetry' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
        "from securedb import _otel\n"
        "assert _otel._instruments() is None\n"
        "_otel.refused(securedb.Config.from_url('postgresql://u@h/db', auth='iam'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
