"""Credential lookups: a cached token or secret against signing or fetching per call.

"Cached lookup" times batches of single-threaded calls. "Contention" runs the same cached
lookups from 1, 8 and 64 threads, and counts, by wrapping the cache's source, how many
signings or `GetSecretValue` calls one forced refresh causes while every thread asks.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from typing import Any

from benchmarks import harness
from benchmarks.context import PG_USER, REGION, Ctx, missing
from benchmarks.harness import Contender, Scale

LOOKUP_LIMIT_NS = 2_000
SIGNING_SPEEDUP = 50
FLAT_LIMIT = 1.5  # per-lookup cost at N threads / at one thread

SIGN = "botocore generate_db_auth_token (signs per call)"
OUR_IAM, OUR_SECRET = "securedb IAM token (cached)", "securedb secret (cached)"
PEER_SECRET = "aws_secretsmanager_caching SecretCache"
CONTROL = "control: a plain Python lookup (no cache)"


def securedb_cache(ctx: Ctx, kind: str) -> Any:
    """A lazy-refresh securedb cache, as `connect` builds it, for "iam" or "secret"."""
    from securedb import Config
    from securedb.credentials import cache_for

    if kind == "iam":
        return cache_for(Config.from_url(ctx.pg_iam_url, auth="iam", refresh="lazy"))
    return cache_for(Config.from_url(secret_id=ctx.secret_id, refresh="lazy"))


def peer_secret_cache(ctx: Ctx) -> Any:
    import botocore.session
    from aws_secretsmanager_caching import SecretCache, SecretCacheConfig

    client = botocore.session.get_session().create_client("secretsmanager", region_name=REGION)
    return functools.partial(
        SecretCache(SecretCacheConfig(), client=client).get_secret_string, ctx.secret_id
    )


def lookups(ctx: Ctx) -> dict[str, Any]:
    """Each contender's single call, or the reason it cannot run."""
    import botocore.session

    rds = botocore.session.get_session().create_client("rds", region_name=REGION)
    calls: dict[str, Any] = {
        OUR_IAM: securedb_cache(ctx, "iam").get,
        SIGN: functools.partial(rds.generate_db_auth_token, "localhost", ctx.pg_port, PG_USER),
        OUR_SECRET: securedb_cache(ctx, "secret").get,
        PEER_SECRET: missing("aws_secretsmanager_caching") or peer_secret_cache(ctx),
    }
    return calls


def cached_lookup(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    contenders = []
    for name, call in lookups(ctx).items():
        contenders.append(
            Contender(
                name,
                None if isinstance(call, str) else harness.batched(call),
                baseline=SIGN,
                securedb=name.startswith("securedb"),
                unavailable=call if isinstance(call, str) else None,
            )
        )
    harness.interleave(contenders, scale)
    rows = harness.results(contenders)
    iam, secret = harness.find(rows, OUR_IAM), harness.find(rows, OUR_SECRET)
    speedup = 1 / iam["ratio"] if iam.get("ratio") else None
    met = (
        harness.ok(iam)
        and harness.ok(secret)
        and max(iam["median"], secret["median"]) <= LOOKUP_LIMIT_NS
        and speedup is not None
        and speedup >= SIGNING_SPEEDUP
    )
    loop = harness.summary(harness.batched(lambda: None)(100_000))["median"]
    return {
        "title": "Cached credential lookup (one thread)",
        "unit": "ns per lookup",
        "target": "≤ 2 µs per lookup; IAM ≥ 50× faster than signing per call",
        "met": met,
        "verdict": f"IAM {harness.fmt_ns(iam['median'])}, secret "
        f"{harness.fmt_ns(secret['median'])}; IAM "
        + (f"{speedup:.0f}× faster than signing" if speedup else "not compared"),
        "contenders": rows,
        "extra": {"loop_and_call_overhead_ns": loop},
        "method": f"{scale.rounds} interleaved rounds of batches of about "
        f"{harness.fmt_ns(scale.batch_ns)} each; a sample is a batch's time / its calls "
        f"(the Python loop and call, {harness.fmt_ns(loop)}, included).",
    }


def threaded(call: Any, threads: int, total: int) -> harness.Run:
    """A run: `threads` threads released together make `total` calls between them."""
    per_thread = max(1, total // threads)

    def run(n: int) -> list[float]:
        barrier = threading.Barrier(threads + 1)

        def work() -> None:
            barrier.wait()
            for _ in range(per_thread):
                call()

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        started = time.perf_counter_ns()
        for w in workers:
            w.join()
        return [(time.perf_counter_ns() - started) / (per_thread * threads)]

    return run


class Plain:
    """The control: the same fast path as securedb's cache (a clock read, a comparison)."""

    def __init__(self) -> None:
        self._value = Plain  # any object with a refresh_at
        self.refresh_at = float("inf")

    def get(self, clock: Any = time.monotonic) -> Any:
        value = self._value
        if value is not None and clock() < self.refresh_at:
            return value
        return None


class Counting:
    """A source wrapper that counts fetches (signings or GetSecretValue reads)."""

    def __init__(self, source: Any) -> None:
        self.source, self.name, self.fetches = source, source.name, 0
        self._lock = threading.Lock()

    def fetch(self, rejected: Any = None) -> Any:
        with self._lock:
            self.fetches += 1
        return self.source.fetch(rejected)


def herd(ctx: Ctx, kind: str, threads: int) -> dict[str, Any]:
    """`threads` threads ask without pause while the value is invalidated once."""
    cache = securedb_cache(ctx, kind)
    cache.get()
    counting = cache.source = Counting(cache.source)
    stop, errors = threading.Event(), []
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        while not stop.is_set():
            try:
                cache.get()
            except Exception as exc:
                errors.append(harness.failure(exc))
                return

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    time.sleep(0.01)
    cache.invalidate(cache.get())
    deadline = time.monotonic() + 5
    while counting.fetches == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05)  # let every thread come back for the new value
    stop.set()
    for w in workers:
        w.join()
    return {"fetches": counting.fetches, "errors": errors[:3]}


def label(name: str, threads: int) -> str:
    return f"{name}, {threads} thread{'s' if threads > 1 else ''}"


def contention(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    calls = {**lookups(ctx), CONTROL: Plain().get}
    contenders = []
    for name in (OUR_IAM, OUR_SECRET, PEER_SECRET, CONTROL):
        call = calls[name]
        single = None if isinstance(call, str) else harness.batched(call)
        if single:
            single(100)  # the first call fetches
        cost = harness.summary(single(2_000))["median"] if single else None
        total = int(scale.lookups_ns / max(cost or 1, 1))
        for threads in scale.threads:
            contenders.append(
                Contender(
                    label(name, threads),
                    threaded(call, threads, max(total, threads)) if single else None,
                    baseline=label(name, scale.threads[0]),
                    securedb=name.startswith("securedb"),
                    unavailable=call if isinstance(call, str) else None,
                )
            )
    rounds = dataclasses.replace(scale, rounds=scale.contention_rounds)
    harness.interleave(contenders, rounds, calibrated=False)
    rows = harness.results(contenders)
    refresh: dict[str, list[int]] = {}
    herd_errors: list[str] = []
    for kind, name in (("iam", OUR_IAM), ("secret", OUR_SECRET)):
        for threads in scale.threads:
            trials = [herd(ctx, kind, threads) for _ in range(scale.refresh_trials)]
            refresh[label(name, threads)] = [t["fetches"] for t in trials]
            herd_errors += [e for t in trials for e in t["errors"]]
    ours = [r for r in rows if r["securedb"]]
    worst = max((r["ratio"] or 0 for r in ours), default=0)
    one_each = all(f == 1 for counts in refresh.values() for f in counts)
    met = all(harness.ok(r) for r in ours) and worst <= FLAT_LIMIT and one_each and not herd_errors
    return {
        "title": "Cached lookups under contention (1, 8, 64 threads)",
        "unit": "ns per lookup (wall time / lookups)",
        "target": f"flat (≤ {FLAT_LIMIT}× the one-thread cost); one signing or fetch per refresh",
        "met": met,
        "verdict": f"worst {worst:.2f}× the one-thread cost; fetches per forced refresh: "
        + ", ".join(sorted({str(f) for c in refresh.values() for f in c})),
        "contenders": rows,
        "extra": {"fetches_per_forced_refresh": refresh, "refresh_errors": herd_errors},
        "method": f"{scale.contention_rounds} interleaved rounds; in each, N threads "
        f"released by a barrier make about {harness.fmt_ns(scale.lookups_ns)} of lookups "
        f"between them. Then, per source and thread count, {scale.refresh_trials} trial(s) "
        "with a fresh cache: the threads ask without pause, the value is invalidated once "
        "(`cache.invalidate`), and a wrapper around the source counts the signings / "
        "GetSecretValue fetches. The control, a lock-free lookup of the same shape with no "
        "cache behind it, shows what the interpreter's threads cost by themselves.",
    }
