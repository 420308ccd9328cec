"""OpenTelemetry: securedb's own metrics and spans, recorded when ``opentelemetry-api`` is
installed (``pip install 'securedb[otel]'``); the application brings the SDK.

Whether the API is there is found out on first use, never at import, and without it
every function here returns at once. Nothing is recorded per query: driver
instrumentation does that. No attribute, event, label or span name holds a credential:
only names (a user, an endpoint, a secret's id) and kinds. The instruments are listed in
docs/observability.md.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from securedb import _state

__all__ = [
    "PoolMetrics",
    "connected",
    "failover_detected",
    "fetched",
    "pool_metrics",
    "pool_name",
    "recovered",
    "refused",
    "retried",
    "transaction",
]

NAME = "securedb"
POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"


class _Instruments:
    """The tracer and every instrument, made once on first use."""

    def __init__(self, metrics: Any, trace: Any) -> None:
        from securedb import __version__

        meter = metrics.get_meter(NAME, __version__)
        self.trace = trace
        self.tracer = trace.get_tracer(NAME, __version__)
        self.fetches = meter.create_counter(
            "securedb.credential.fetches",
            "{fetch}",
            "Credential fetches, by source kind and outcome",
        )
        self.fetch_duration = meter.create_histogram(
            "securedb.credential.fetch.duration", "s", "How long a credential fetch took"
        )
        meter.create_observable_gauge(
            "securedb.credential.expires_in",
            [_expiries],
            "s",
            "Seconds until the credential each cache serves expires",
        )
        self.refusals = meter.create_counter(
            "securedb.auth.refusals", "{refusal}", "Credentials the database refused"
        )
        self.retries = meter.create_counter(
            "securedb.transaction.retries", "{retry}", "run_transaction retries, by failure kind"
        )
        self.failovers = meter.create_counter(
            "securedb.failover.detected", "{failover}", "Failovers detected by a connector"
        )
        self.recovery = meter.create_histogram(
            "securedb.failover.recovery",
            "s",
            "From a detected failover to the next successful connection",
        )
        # The pools' instruments: OpenTelemetry's database client conventions (1.26+).
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            [self._connection_counts],
            "{connection}",
            "The number of connections that are currently in state described by the state "
            "attribute",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            [self._pending_requests],
            "{request}",
            "The number of current pending requests for an open connection",
        )
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time", "s", "The time it took to create a new connection"
        )
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            "s",
            "The time it took to obtain an open connection from the pool",
        )
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time",
            "s",
            "The time between borrowing a connection and returning it to the pool",
        )
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            "{timeout}",
            "The number of connection timeouts that have occurred trying to obtain a "
            "connection from the pool",
        )
        self.pools: weakref.WeakSet[PoolMetrics] = weakref.WeakSet()

    def _by_pool_name(self) -> dict[str, tuple[int, int, int]]:
        """Idle, used and pending per pool name (pools that share one are summed)."""
        totals: dict[str, tuple[int, int, int]] = {}
        for metrics in list(self.pools):
            counts = metrics.counts()
            if counts is not None:
                idle, used, pending = totals.get(metrics.name, (0, 0, 0))
                totals[metrics.name] = (
                    idle + counts[0],
                    used + counts[1],
                    pending + metrics.pending,
                )
        return totals

    def _connection_counts(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for name, (idle, used, _) in self._by_pool_name().items():
            yield Observation(idle, {POOL_NAME: name, STATE: "idle"})
            yield Observation(used, {POOL_NAME: name, STATE: "used"})

    def _pending_requests(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for name, (_, _, pending) in self._by_pool_name().items():
            yield Observation(pending, {POOL_NAME: name})


_loaded: _Instruments | None = None
_looked = False  # for the API, once
_lock = threading.Lock()  # two first uses at once would register every instrument twice


def _instruments() -> _Instruments | None:
    global _loaded, _looked
    if not _looked:
        with _lock:
            if not _looked:
                try:
                    from opentelemetry import metrics, trace
                except ImportError:
                    pass
                else:
                    _loaded = _Instruments(metrics, trace)
                _looked = True
    return _loaded


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


_state.on_fork(_after_fork_in_child)


def source_kind(source: Any) -> str:
    """``iam``, ``secret`` or ``password`` (a source of the application's own: ``other``)."""
    return str(getattr(source, "kind", "other"))


def _expiries(options: Any) -> Iterable[Any]:
    """The gauge's observations: one per credential cache in use."""
    from opentelemetry.metrics import Observation

    for cache, _ in list(_state.registry.entries.values()):
        value = cache._value
        if value is not None and math.isfinite(value.expires_at):  # a secret's does not
            attributes = {"securedb.credential.source": source_kind(cache.source)}
            attributes["securedb.credential.name"] = cache.source.name
            yield Observation(max(0.0, value.expires_at - cache._clock()), attributes)


def pool_name(cfg: Any, given: Any = None) -> str:
    """A pool's name in its metrics: the one its application gave it, else
    ``host:port/dbname``, as the conventions suggest."""
    return given if isinstance(given, str) and given else f"{cfg.host}:{cfg.port}/{cfg.dbname}"


def pool_metrics(name: str, counts: Callable[[Any], tuple[int, int]]) -> PoolMetrics | None:
    """A new pool's instruments, or None without the API. `counts(pool)` reads the
    watched pool's idle and used connections when metrics are collected."""
    tools = _instruments()
    if tools is None:
        return None
    metrics = PoolMetrics(tools, name, counts)
    tools.pools.add(metrics)
    return metrics


class PoolMetrics:
    """One pool's instruments. Its counts are read when metrics are collected; waits,
    uses, new connections and timeouts are recorded as they happen."""

    def __init__(
        self, tools: _Instruments, name: str, counts: Callable[[Any], tuple[int, int]]
    ) -> None:
        self.name = name
        self.attributes = {POOL_NAME: name}
        self._tools = tools
        self._counts = counts
        self._pool: Callable[[], Any] = lambda: None
        self._out: dict[int, float] = {}  # id of a connection checked out -> since when
        self.pending = 0
        self._lock = threading.Lock()
        _state.track(self)

    def watch(self, pool: Any) -> None:
        """Read the counts of `pool` (held weakly: a pool collected is no longer counted)."""
        self._pool = weakref.ref(pool)

    def counts(self) -> tuple[int, int] | None:
        pool = self._pool()
        return None if pool is None else self._counts(pool)

    def acquiring(self, timeout: type[BaseException]) -> _Acquiring:
        """``with metrics.acquiring(PoolTimeout) as request: conn = ...`` then
        ``metrics.checked_out(conn, request)``: a wait, or a timeout, and a pending request
        while it lasts."""
        return _Acquiring(self, timeout)

    def checked_out(self, conn: object, request: _Acquiring) -> None:
        self._out[id(conn)] = request.end

    def returned(self, conn: object) -> None:
        since = self._out.pop(id(conn), None)
        if since is not None:
            self._tools.use_time.record(time.perf_counter() - since, self.attributes)

    def created(self, start: float) -> None:
        """A new connection, begun at `start` (``time.perf_counter()``)."""
        self._tools.create_time.record(time.perf_counter() - start, self.attributes)

    def _waiting(self, change: int) -> None:
        with self._lock:
            self.pending += change

    def after_fork(self) -> None:
        self._lock = threading.Lock()


class _Acquiring:
    """One request for a connection; a context manager (a class: it runs per checkout)."""

    __slots__ = ("end", "metrics", "start", "timeout")

    def __init__(self, metrics: PoolMetrics, timeout: type[BaseException]) -> None:
        self.metrics, self.timeout = metrics, timeout

    def __enter__(self) -> _Acquiring:
        self.metrics._waiting(1)
        self.start = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.end = time.perf_counter()
        metrics = self.metrics
        metrics._waiting(-1)
        if kind is None:
            metrics._tools.wait_time.record(self.end - self.start, metrics.attributes)
        elif issubclass(kind, self.timeout):
            metrics._tools.timeouts.add(1, metrics.attributes)


def _span(
    tools: _Instruments,
    name: str,
    start: int,
    end: int,
    attributes: dict[str, Any],
    error: BaseException | None,
    context: Any = None,
) -> Any:
    """A span that took place from `start` to `end` (ns since the epoch), ended."""
    span = tools.tracer.start_span(name, context, attributes=attributes, start_time=start)
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(tools.trace.Status(tools.trace.StatusCode.ERROR))
    span.end(end)
    return span


def fetched(source: Any, start: int, error: BaseException | None) -> None:
    """A credential fetch that began at `start`: a span, its duration and its outcome
    (``error.type`` names the class of a failure, never its text)."""
    tools = _instruments()
    if tools is None:
        return
    end = time.time_ns()
    kind = {"securedb.credential.source": source_kind(source)}
    outcome = {"securedb.outcome": "failure" if error else "success"}
    if error is not None:
        outcome["error.type"] = type(error).__name__
    attributes = {**kind, "securedb.credential.name": source.name}
    _span(tools, "securedb credential fetch", start, end, attributes, error)
    tools.fetches.add(1, {**kind, **outcome})
    tools.fetch_duration.record((end - start) / 1e9, {**kind, **outcome})


def connected(cfg: Any, start: int, credential_at: int, error: BaseException | None) -> None:
    """A new connection that began at `start` and had its credential at `credential_at`:
    a span with the credential and the TLS and login steps as children."""
    tools = _instruments()
    if tools is None:
        return
    end = time.time_ns()
    attributes = {
        "db.system.name": cfg.engine or "",
        "server.address": cfg.host or "",
        "server.port": cfg.port or 0,
        "db.namespace": cfg.dbname or "",
        "securedb.auth.mode": cfg.auth,
    }
    parent = _span(tools, "securedb connect", start, end, attributes, error)
    context = tools.trace.set_span_in_context(parent)
    _span(tools, "securedb credential", start, credential_at, {}, None, context)
    _span(tools, "securedb tls and login", credential_at, end, {}, error, context)


def refused(cfg: Any) -> None:
    """The database refused a credential."""
    tools = _instruments()
    if tools is not None:
        attributes = {"securedb.auth.mode": cfg.auth, "server.address": cfg.host or ""}
        tools.refusals.add(1, attributes)


def failover_detected(cfg: Any) -> None:
    tools = _instruments()
    if tools is not None:
        tools.failovers.add(1, {"server.address": cfg.host or ""})


def recovered(cfg: Any, seconds: float) -> None:
    tools = _instruments()
    if tools is not None:
        tools.recovery.record(seconds, {"server.address": cfg.host or ""})


@contextlib.contextmanager
def transaction(operation: str) -> Iterator[None]:
    """`run_transaction`'s span; `retried` adds an event to it for each retry."""
    tools = _instruments()
    if tools is None:
        yield
        return
    with tools.tracer.start_as_current_span(
        f"securedb {operation}", record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield
        except BaseException as exc:  # its class only: the text of an SQL error may hold data
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(tools.trace.Status(tools.trace.StatusCode.ERROR))
            raise


def retried(operation: str, failure: str, attempt: int, wait: float) -> None:
    tools = _instruments()
    if tools is None:
        return
    tools.retries.add(1, {"securedb.operation": operation, "securedb.failure": failure})
    tools.trace.get_current_span().add_event(
        "retry", {"securedb.attempt": attempt, "securedb.failure": failure, "securedb.wait": wait}
    )
