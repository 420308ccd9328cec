"""The example apps' ``/stats``: this process's pid and securedb's credential fetches so far.

securedb counts every credential fetch in its OpenTelemetry counter
``securedb.credential.fetches`` (docs/observability.md): one per IAM token signed, one per
Secrets Manager read (a read is one ``GetSecretValue``, or two in a rotation's window,
AWSCURRENT then AWSPENDING). `install` gives the process an OpenTelemetry SDK meter
provider with an in-memory reader, and `snapshot` reads the counter back. A production
app would export the same counter with its own reader (OTLP, Prometheus); the fleet soak
(``benchmarks/soak``) polls ``/stats`` of each worker instead.

The apps call `install` only when ``APP_STATS=1``: it sets the process's global meter
provider, which an application normally owns.
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["enabled", "install", "snapshot"]

_reader: Any = None


def enabled() -> bool:
    return os.environ.get("APP_STATS") == "1"


def install() -> None:
    """Set an SDK meter provider with an in-memory reader, once per process.

    Under ``gunicorn --preload`` this runs in the master before the fork: each worker
    inherits the provider and counts from zero (the master fetches nothing).
    """
    global _reader
    if _reader is not None:
        return
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    _reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))


def snapshot() -> dict[str, Any]:
    """``{"pid": ..., "fetches": {"iam": n, "secret": m}, "failed": {...}}``: this process's
    fetches by source kind, all outcomes, and how many of them failed."""
    fetches: dict[str, int] = {}
    failed: dict[str, int] = {}
    expires_in: dict[str, float] = {}
    data = _reader.get_metrics_data() if _reader is not None else None
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "securedb.credential.expires_in":
                    for point in metric.data.data_points:
                        name = str(point.attributes.get("securedb.credential.name"))
                        expires_in[name] = round(float(point.value), 1)
                if metric.name != "securedb.credential.fetches":
                    continue
                for point in metric.data.data_points:
                    kind = str(point.attributes.get("securedb.credential.source", "other"))
                    fetches[kind] = fetches.get(kind, 0) + int(point.value)
                    if point.attributes.get("securedb.outcome") != "success":
                        failed[kind] = failed.get(kind, 0) + int(point.value)
    threads = sorted(t.name for t in threading.enumerate())
    return {
        "pid": os.getpid(),
        "fetches": fetches,
        "failed": failed,
        "expires_in": expires_in,
        "threads": threads,
    }
