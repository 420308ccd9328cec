"""The method every case shares: warm-up, interleaved rounds, batch timing, statistics.

A contender is a function ``run(n) -> samples``: it does `n` operations and returns
nanoseconds per operation (one sample for a timed batch, or one per operation when each
is timed on its own, as in the connection storm). Contenders run interleaved, A B C A B
C ..., so drift of the machine (frequency, other load) hits them all alike.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

Run = Callable[[int], list[float]]


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much work each case does: `FULL` for the committed results, `QUICK` for smoke."""

    name: str
    rounds: int  # interleaved rounds per contender (in-process batches)
    warmup: int  # warm-up calls (or batches) per contender
    batch_ns: int  # a timed batch lasts about this long
    fresh_rounds: int  # rounds of the cases that open a new connection or pool per batch
    subprocess_runs: int  # fresh-process cases: runs per contender
    connect_rounds: int  # new-connection case: connections per contender
    contention_rounds: int
    lookups_ns: int  # contention: each multi-threaded run lasts about this long
    threads: tuple[int, ...]
    refresh_trials: int  # contention: forced refreshes per source and thread count
    storm_threads: int
    storm_rounds: int
    flips: int  # Aurora writer flips per contender (`--flips`)


FULL = Scale(
    name="full",
    rounds=41,
    warmup=3,
    batch_ns=2_000_000,
    fresh_rounds=81,
    subprocess_runs=25,
    connect_rounds=41,
    contention_rounds=11,
    lookups_ns=100_000_000,
    threads=(1, 8, 64),
    refresh_trials=5,
    storm_threads=200,
    storm_rounds=2,
    flips=5,
)
QUICK = Scale(
    name="quick",
    rounds=3,
    warmup=1,
    batch_ns=200_000,
    fresh_rounds=3,
    subprocess_runs=2,
    connect_rounds=3,
    contention_rounds=2,
    lookups_ns=2_000_000,
    threads=(1, 8, 64),
    refresh_trials=1,
    storm_threads=8,
    storm_rounds=1,
    flips=1,
)


@dataclasses.dataclass
class Contender:
    name: str
    run: Run | None = None
    baseline: str | None = None  # the contender this one's ratio is taken against
    securedb: bool = False
    note: str = ""
    unavailable: str | None = None  # why it could not run, said in the results
    batch: int = 1
    samples: list[float] = dataclasses.field(default_factory=list)


def batched(fn: Callable[[], Any]) -> Run:
    """A run that calls `fn` n times and returns the mean cost of one call."""

    def run(n: int) -> list[float]:
        started = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return [(time.perf_counter_ns() - started) / n]

    return run


def each(fn: Callable[[], Any]) -> Run:
    """A run that times every call of `fn` on its own (costly operations)."""

    def run(n: int) -> list[float]:
        samples = []
        for _ in range(n):
            started = time.perf_counter_ns()
            fn()
            samples.append(float(time.perf_counter_ns() - started))
        return samples

    return run


def fresh(
    open_: Callable[[], Any],
    op: Callable[[Any], Callable[[], Any]],
    close: Callable[[Any], Any],
    warm: int = 20,
) -> Run:
    """A batched run on a resource opened anew for each batch (not timed), then closed.

    For connections and pools: each server backend lands on a CPU of its own choosing,
    and on a small machine one connection can be several times slower than the next for
    as long as it lives. A new one per batch samples that placement every round, instead
    of fixing it once per contender.
    """

    def run(n: int) -> list[float]:
        resource = open_()
        try:
            call = op(resource)
            for _ in range(warm):
                call()
            started = time.perf_counter_ns()
            for _ in range(n):
                call()
            return [(time.perf_counter_ns() - started) / n]
        finally:
            close(resource)

    return run


def calibrate(run: Run, target_ns: int, limit: int = 1_000_000) -> int:
    """How many calls make a batch of about `target_ns` (after the caller's warm-up)."""
    n = 1
    while True:
        cost = run(n)[0] * n
        if cost >= target_ns / 10 or n >= limit:
            return max(1, min(limit, math.ceil(n * target_ns / max(cost, 1))))
        n *= 10


def interleave(contenders: list[Contender], scale: Scale, *, calibrated: bool = True) -> None:
    """Warm every contender up, then run them interleaved for `scale.rounds` rounds.

    Each round runs every contender once, starting one further along each time.

    A contender that fails is marked unavailable with the reason and left out.
    """
    active = []
    for c in contenders:
        if c.unavailable or c.run is None:
            continue
        try:
            for _ in range(scale.warmup):
                c.run(1)
            if calibrated:
                c.batch = calibrate(c.run, scale.batch_ns)
        except Exception as exc:
            c.unavailable = failure(exc)
            continue
        active.append(c)
    for round_ in range(scale.rounds):
        gc.collect()  # garbage of one round is not collected in the next one's timing
        start = round_ % len(active) if active else 0
        for c in active[start:] + active[:start]:  # A B C, B C A, ...: no fixed first
            assert c.run is not None
            try:
                c.samples.extend(c.run(c.batch))
            except Exception as exc:
                c.unavailable = failure(exc)
                active.remove(c)


def failure(exc: BaseException) -> str:
    """An exception as one line for the results (machine paths removed by `report`)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def summary(samples: list[float]) -> dict[str, float | int | None]:
    """Median, p99, quartiles, IQR and stdev of `samples`, in the samples' unit."""
    if not samples:
        return {"n": 0, "median": None, "p99": None, "q1": None, "q3": None, "iqr": None}
    ordered = sorted(samples)
    if len(ordered) > 1:
        q = statistics.quantiles(ordered, n=100, method="inclusive")
        q1, p99, q3 = q[24], q[98], q[74]
    else:
        q1 = p99 = q3 = ordered[0]
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p99": p99,
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "stdev": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
        "min": ordered[0],
        "max": ordered[-1],
    }


def ratio_ci(samples: list[float], base: list[float], reps: int = 400) -> list[float] | None:
    """A 95% bootstrap interval for median(samples) / median(base); None if too few."""
    if len(samples) < 5 or len(base) < 5 or samples is base:
        return None
    rng = random.Random(0)  # the same samples give the same interval
    ratios = sorted(
        statistics.median(rng.choices(samples, k=len(samples)))
        / statistics.median(rng.choices(base, k=len(base)))
        for _ in range(reps)
    )
    return [ratios[int(reps * 0.025)], ratios[int(reps * 0.975) - 1]]


def results(contenders: list[Contender]) -> list[dict[str, Any]]:
    """Each contender's statistics and ratio of medians to its baseline, for results.json.

    The ratio comes with a 95% bootstrap interval: what the noise of this run allows.
    """
    by_name = {c.name: c for c in contenders}
    medians = {c.name: summary(c.samples)["median"] for c in contenders}
    out = []
    for c in contenders:
        stats = summary(c.samples)
        base = medians.get(c.baseline) if c.baseline else None
        ratio = stats["median"] / base if stats["median"] is not None and base else None
        interval = None
        if ratio is not None and c.baseline:
            interval = ratio_ci(c.samples, by_name[c.baseline].samples)
        out.append(
            {
                "name": c.name,
                "securedb": c.securedb,
                "baseline": c.baseline,
                "ratio": ratio,
                "ratio_ci95": interval,
                "batch": c.batch,
                "note": c.note,
                "unavailable": c.unavailable,
                **stats,
                "samples": [float(f"{s:.4g}") for s in c.samples],
            }
        )
    return out


def find(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in rows if r["name"] == name)


def ok(row: dict[str, Any], key: str = "median") -> bool:
    """The row ran and has the statistic `key`."""
    return not row["unavailable"] and row.get(key) is not None


def fmt_ns(ns: float | None) -> str:
    """A duration in the unit that reads best: ns, µs, ms or s."""
    if ns is None:
        return "—"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"
