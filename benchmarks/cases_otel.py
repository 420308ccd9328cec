"""What OpenTelemetry costs: securedb's pools with the SDK recording, and without the API.

"Without the API" is an engine or pool made while securedb sees no ``opentelemetry``
(its pool is SQLAlchemy's or psycopg_pool's as they come); "with the SDK" is one made while
securedb's instruments report to an SDK ``MeterProvider`` with a reader, as in an
application that exports metrics. Both are made in this one process, so they run
interleaved; the SDK provider is this case's own, not the process's global one, so the
other cases are not measured with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks import harness
from benchmarks.cases_pooling import select_one
from benchmarks.context import Ctx, pinned
from benchmarks.harness import Contender, Scale

CHECKOUT_LIMIT = 1.05
QUERY_LIMIT = 1.03
WITHOUT, WITH = "no OpenTelemetry API", "OpenTelemetry SDK recording"
NO_SDK = "OpenTelemetry API, no SDK"
CONTROL = "no OpenTelemetry API + two SDK histogram records (control)"


@contextlib.contextmanager
def instruments(tools: Any) -> Iterator[None]:
    """securedb's instruments while an engine or pool is made: `tools`, or None (no API)."""
    from securedb import _otel

    saved = _otel._loaded, _otel._looked
    _otel._loaded, _otel._looked = tools, True
    try:
        yield
    finally:
        _otel._loaded, _otel._looked = saved


def sdk_instruments() -> tuple[Any, Any]:
    """securedb's instruments on an SDK meter provider of their own, and its reader."""
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from securedb import _otel

    reader = InMemoryMetricReader()
    return _otel._Instruments(MeterProvider(metric_readers=[reader]), trace), reader


def no_sdk_instruments() -> Any:
    """securedb's instruments on the API's no-op provider: the API installed, no SDK."""
    from opentelemetry import trace
    from opentelemetry.metrics import NoOpMeterProvider

    from securedb import _otel

    return _otel._Instruments(NoOpMeterProvider(), trace)


def with_two_records(op: Callable[[Any], Callable[[], None]]) -> Callable[[Any], Any]:
    """`op`, followed by two records on an SDK histogram: what the SDK itself charges for
    a checkout's wait and use time, without securedb's code around them."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("control")
    waits, uses = meter.create_histogram("wait", "s"), meter.create_histogram("use", "s")
    attributes = {"db.client.connection.pool.name": "control"}

    def op_then_records(target: Any) -> Callable[[], None]:
        call = op(target)

        def once() -> None:
            call()
            waits.record(0.0001, attributes)
            uses.record(0.0001, attributes)

        return once

    return op_then_records


def made_with(tools: Any, make: Callable[[], Any]) -> Callable[[], Any]:
    def made() -> Any:
        with instruments(tools):
            return make()

    return made


def otel_cost(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    import securedb

    sdk, reader = sdk_instruments()
    makers = {
        "securedb.engine": lambda: securedb.engine(ctx.pg_iam_url, auth="iam", ca_bundle=ctx.ca),
        "securedb.pool": lambda: securedb.pool(ctx.pg_iam_url, auth="iam", ca_bundle=ctx.ca),
    }
    contenders = []
    for kind, make in makers.items():
        for label, tools in ((WITHOUT, None), (NO_SDK, no_sdk_instruments()), (WITH, sdk)):
            made = made_with(tools, make)
            runs = {
                "checkout": harness.fresh(made, checkout, close),
                "SELECT 1": harness.fresh(held(made), query, give_back),
            }
            for what, run in runs.items():
                baseline = f"{kind} {what}, {WITHOUT}"
                contenders.append(Contender(f"{kind} {what}, {label}", run, baseline, bool(tools)))
        control = harness.fresh(made_with(None, make), with_two_records(checkout), close)
        contenders.append(
            Contender(f"{kind} checkout, {CONTROL}", control, f"{kind} checkout, {WITHOUT}")
        )
    with pinned(ctx.bed) as placement:
        harness.interleave(contenders, dataclasses.replace(scale, rounds=scale.fresh_rounds))
    recorded = waits_recorded(reader)
    rows = harness.results(contenders)
    limits = {r["name"]: QUERY_LIMIT if "SELECT" in r["name"] else CHECKOUT_LIMIT for r in rows}
    ours = [r for r in rows if r["name"].endswith(WITH)]
    met = recorded > 0 and all(harness.ok(r) and r["ratio"] <= limits[r["name"]] for r in ours)
    worst_checkout = max((r["ratio"] or 0 for r in ours if "checkout" in r["name"]), default=0)
    control = max((r["ratio"] or 0 for r in rows if r["name"].endswith(CONTROL)), default=0)
    worst_query = max((r["ratio"] or 0 for r in ours if "SELECT" in r["name"]), default=0)
    return {
        "title": "OpenTelemetry's cost per checkout and per query",
        "unit": "ns per call",
        "target": f"with the SDK: checkout ≤ {CHECKOUT_LIMIT}×, per query ≤ {QUERY_LIMIT}× "
        "the same pool without the API (import: see the import case)",
        "met": met,
        "verdict": f"checkout worst {worst_checkout:.3f}× (the SDK's two records alone: "
        f"{control:.3f}×), per query worst {worst_query:.3f}×; {recorded} waits recorded",
        "contenders": rows,
        "method": f"{scale.fresh_rounds} interleaved rounds of batches of about "
        f"{harness.fmt_ns(scale.batch_ns)}; a checkout is `with engine.connect(): pass` or "
        "`with pool.connection(): pass`, a query `SELECT 1` on a connection checked out "
        "before the batch. The pools are made with securedb's instruments on an SDK "
        "`MeterProvider` with a reader (as an exporting application has them), or with "
        "securedb seeing no API; each batch gets a new engine or pool (made, warmed and "
        f"closed outside the timing). Placement: {placement}. The control is the pool "
        "without the API, each checkout followed by two records on an SDK histogram with "
        "the same attribute: the price of the conventions' wait and use time in the SDK "
        "alone. The API-without-SDK rows use the API's no-op provider.",
    }


def checkout(target: Any) -> Callable[[], None]:
    is_engine = hasattr(target, "dispose")
    if not is_engine:
        target.wait()

    def once() -> None:
        with target.connect() if is_engine else target.connection():
            pass

    return once


def close(target: Any) -> None:
    target.dispose() if hasattr(target, "dispose") else target.close()


def held(make: Callable[[], Any]) -> Callable[[], tuple[Any, Any]]:
    """A maker of an engine or pool and a connection checked out of it (a DBAPI
    connection from an engine)."""

    def made() -> tuple[Any, Any]:
        target = make()
        return target, target.raw_connection() if hasattr(target, "dispose") else target.getconn()

    return made


def query(pair: tuple[Any, Any]) -> Callable[[], Any]:
    return select_one(pair[1].cursor())


def give_back(pair: tuple[Any, Any]) -> None:
    target, conn = pair
    conn.close() if hasattr(target, "dispose") else target.putconn(conn)
    close(target)


def waits_recorded(reader: Any) -> int:
    """How many checkouts the SDK recorded: proof that the SDK contenders did record."""
    data = reader.get_metrics_data()
    return sum(
        point.count
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "db.client.connection.wait_time"
        for point in metric.data.data_points
    )
