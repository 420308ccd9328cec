"""Event-loop lag while credentials are worked on: reported here, never asserted in a test.

A ticker task sleeps 1 ms again and again and notes how late each wake-up is: how long
something else held the event loop (`benchmarks.lag_child.Ticker`). Two situations:
tasks opening connections across IAM token refreshes, and a fresh process fetching a
secret cold (botocore not yet imported). Calling the blocking API on the loop
(`securedb.connect`, or boto3) is measured the same way, so the difference shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.async_harness import Call, close, event_loop
from benchmarks.cases_async import WRAPPER
from benchmarks.context import APP_PASSWORD, APP_USER, PG_USER, REGION, Ctx, missing
from benchmarks.harness import Contender, Scale
from benchmarks.lag_child import Ticker

ROOT = Path(__file__).resolve().parents[1]
REFRESH_LIMIT_NS, COLD_LIMIT_NS = 20_000_000, 50_000_000
ANTI = "on the loop (anti-pattern)"
CONTROL = "control: psycopg async, token signed once"
COLD_CONTROL = "control: psycopg async with the password, no secret"
UNIT = "ns of wake-up delay"
SHARED = (
    "Not pinned to CPUs: the lag is about the process's own threads. The machine is "
    "small and was shared, so the control row (no credential work) shows what the "
    "connections themselves and the machine add."
)


@dataclasses.dataclass(frozen=True)
class LagScale:
    tasks: int
    episodes: int  # per contender, interleaved
    seconds: float  # per episode
    warm: float  # a warm-up episode per contender (imports, first connections)
    ttl: int  # iam_token_ttl: a token is refreshed after 2/3 of (ttl - 1) seconds
    processes: int  # cold-secret case: fresh processes per contender


LAG = {"full": LagScale(30, 3, 7.0, 1.0, 3, 15), "quick": LagScale(8, 1, 1.0, 0.3, 2, 1)}
Work = Callable[[], contextlib.AbstractAsyncContextManager[Call]]


def episodes(work: Work, lag: LagScale, log: dict[str, Any], seconds: float) -> harness.Run:
    """`n` episodes, each on a new loop: `lag.tasks` tasks call the work's `once` meanwhile."""

    async def episode() -> list[float]:
        async with work() as once:
            ticker = Ticker()
            ticking = asyncio.create_task(ticker.run())
            deadline = time.monotonic() + seconds

            async def task() -> None:
                while time.monotonic() < deadline:
                    try:
                        await once()
                        log["connects"] += 1
                    except Exception as exc:
                        log["errors"].append(harness.failure(exc))

            await asyncio.gather(*(task() for _ in range(lag.tasks)))
            ticker.stop.set()
            await ticking
        return ticker.worst_per_window()

    def run(n: int) -> list[float]:
        with event_loop() as loop:
            return [s for _ in range(n) for s in loop.run_until_complete(episode())]

    return run


def loop_lag_refresh(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    import boto3
    import psycopg
    from sqlalchemy.pool import NullPool

    import securedb

    lag = LAG.get(scale.name, LAG["quick"])
    iam = {"auth": "iam", "iam_token_ttl": lag.ttl, "ca_bundle": ctx.ca}
    signed = ctx.pg_kwargs()  # a token minted once, valid for 15 minutes
    asyncpg_url = ctx.pg_iam_url.replace("postgresql://", "postgresql+asyncpg://")

    def engine(refresh: str, url: str = ctx.pg_iam_url) -> Work:
        @contextlib.asynccontextmanager
        async def work() -> AsyncIterator[Call]:
            eng = securedb.async_engine(url, refresh=refresh, poolclass=NullPool, **iam)

            async def once() -> None:
                async with eng.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")

            try:
                yield once
            finally:
                await eng.dispose()

        return work

    async def raw() -> None:
        await close(await query(await psycopg.AsyncConnection.connect(**signed)))

    async def wrapper() -> None:
        from aws_advanced_python_wrapper.aio import AsyncAwsWrapperConnection

        kwargs = {**ctx.wrapper_kwargs("iam"), "iam_expiration": lag.ttl}
        conn = await AsyncAwsWrapperConnection.connect(psycopg.AsyncConnection.connect, **kwargs)
        await close(await query(conn))

    async def securedb_blocking() -> None:
        conn = securedb.connect(ctx.pg_iam_url, refresh="lazy", **iam)
        conn.execute("SELECT 1")
        conn.close()

    async def boto3_blocking() -> None:
        client = boto3.session.Session().client("rds", region_name=REGION)
        token = client.generate_db_auth_token("localhost", ctx.pg_port, PG_USER)
        kwargs = {**signed, "password": token}
        await close(await query(await psycopg.AsyncConnection.connect(**kwargs)))

    works: list[tuple[str, Work, str | None]] = [
        ("securedb.async_engine, refresh='lazy'", engine("lazy"), None),
        ("securedb.async_engine, refresh='background'", engine("background"), None),
        ("securedb.async_engine (asyncpg), refresh='lazy'", engine("lazy", asyncpg_url), None),
        ("AWS wrapper async (iam plugin)", plain(wrapper), missing(WRAPPER)),
        (CONTROL, plain(raw), None),
        (f"securedb.connect {ANTI}", plain(securedb_blocking), None),
        (f"boto3 Session + client + token {ANTI}", plain(boto3_blocking), None),
    ]
    logs = {name: {"connects": 0, "errors": []} for name, _, _ in works}
    contenders = [
        Contender(name, episodes(work, lag, logs[name], lag.seconds), CONTROL, unavailable=why)
        for name, work, why in works
    ]
    for c in contenders:
        c.securedb = c.name.startswith("securedb.async")
    for c, (_, work, _) in zip(contenders, works, strict=True):
        if not c.unavailable:  # imports and first connections, outside the rounds
            with contextlib.suppress(Exception):  # a failure shows in the rounds
                episodes(work, lag, {"connects": 0, "errors": []}, lag.warm)(1)
    rounds = dataclasses.replace(scale, rounds=lag.episodes, warmup=0)
    harness.interleave(contenders, rounds, calibrated=False)
    rows = harness.results(contenders)
    for row in rows:
        log = logs[row["name"]]
        errors = f" ({log['errors'][0]})" if log["errors"] else ""
        row["note"] = (
            f"worst {harness.fmt_ns(row.get('max'))}; {log['connects']} connections, "
            f"{len(log['errors'])} errors{errors}"
        )
    return lag_result(
        rows,
        REFRESH_LIMIT_NS,
        errors=sum(len(logs[r["name"]]["errors"]) for r in rows if r["securedb"]),
        title=f"Event-loop lag: {lag.tasks} tasks connecting across IAM token refreshes",
        unit=f"{UNIT} (worst of each 250 ms)",
        method=f"{lag.episodes} interleaved episode(s) of {lag.seconds:g} s per contender, "
        f"after a {lag.warm:g} s warm-up episode each; in each, {lag.tasks} tasks open a "
        "connection to PostgreSQL as iam_user (TLS verify-full), run `SELECT 1` and close "
        "it, again and again, while a ticker task sleeps 1 ms and notes how late it wakes. "
        f"`iam_token_ttl={lag.ttl}`: a token is refreshed after "
        f"{(lag.ttl - 1) * 2 / 3:.2g} s and expires after {lag.ttl - 1} s, so an episode "
        f"spans about {lag.seconds / (lag.ttl - 1):.0f} token lifetimes. securedb's engine "
        "has `poolclass=NullPool`, so every checkout opens a connection and takes a "
        "credential (on psycopg, and on asyncpg through SQLAlchemy's asyncpg dialect, "
        "against the same psycopg control); the AWS wrapper's IAM plugin gets `iam_expiration` "
        "the same. A sample "
        "is the worst wake-up of a 250 ms window; the note gives the worst of all, the ratio "
        "compares medians with the control's. " + SHARED,
    )


def plain(once: Call) -> Work:
    @contextlib.asynccontextmanager
    async def work() -> AsyncIterator[Call]:
        yield once

    return work


async def query(conn: Any) -> Any:
    await conn.cursor().execute("SELECT 1")
    return conn


COLD = [  # name, lag_child variant
    ("securedb.async_connect(secret_id=...), cold", "securedb_async"),
    (
        "securedb.async_connect(secret_id=...), psycopg imported first",
        "securedb_async_psycopg_first",
    ),
    ("AWS wrapper async (aws_secrets_manager plugin)", "wrapper"),
    (COLD_CONTROL, "password"),
    (f"securedb.connect(secret_id=...) {ANTI}", "securedb_blocking"),
    (f"boto3 get_secret_value {ANTI}", "boto3_blocking"),
]


def child(variant: str, args: dict[str, Any], seen: dict[str, Any]) -> harness.Run:
    """Fresh processes of `benchmarks.lag_child`; the arguments go on stdin, not argv."""

    def run(n: int) -> list[float]:
        out = []
        for _ in range(n):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.lag_child", variant],
                input=json.dumps(args),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines()
                raise RuntimeError(lines[-1] if lines else "failed")
            answer = json.loads(proc.stdout.strip().splitlines()[-1])
            seen["took"].append(answer["took"])
            seen["imported_before"] = answer["imported_before"]
            out.append(float(answer["ns"]))
        return out

    return run


def loop_lag_cold_secret(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    lag = LAG.get(scale.name, LAG["quick"])
    args = {"secret": ctx.secret_id, "ca": ctx.ca, "port": ctx.pg_port, "region": REGION}
    args.update(user=APP_USER, password=APP_PASSWORD)  # the control's, on stdin
    seen = {name: {"took": [], "imported_before": []} for name, _ in COLD}
    contenders = [
        Contender(
            name,
            child(variant, args, seen[name]),
            COLD_CONTROL,
            securedb=name.startswith("securedb.async"),
            unavailable=missing(WRAPPER) if name.startswith("AWS") else None,
        )
        for name, variant in COLD
    ]
    rounds = dataclasses.replace(scale, rounds=lag.processes, warmup=1)
    harness.interleave(contenders, rounds, calibrated=False)
    rows = harness.results(contenders)
    for row in rows:
        s = seen[row["name"]]
        row["note"] = (
            f"worst {harness.fmt_ns(row.get('max'))}; the connection took "
            f"{harness.fmt_ns(harness.summary(s['took'])['median'])} (median); imported "
            f"before the loop: {', '.join(s['imported_before']) or 'none'}"
        )
    return lag_result(
        rows,
        COLD_LIMIT_NS,
        errors=0,
        title="Event-loop lag: a cold secret fetch in a fresh process (first botocore import)",
        unit=f"{UNIT} (worst of each process)",
        method=f"{lag.processes} fresh interpreters per contender, interleaved, after one "
        "warm-up each (it fills the bytecode caches). Each imports what an application "
        "would at the top of a module (securedb alone imports neither botocore nor a "
        "driver), starts an event loop with a ticker task that sleeps 1 ms and notes how "
        "late it wakes, then awaits one connection to PostgreSQL (TLS verify-full) with "
        "the credentials of an RDS-format secret in the bed's Secrets Manager (moto), and "
        "closes it. A sample is the worst wake-up of one process; the ratio compares medians "
        "with the control's. securedb imports "
        "botocore and fetches in a worker thread; the first async connection imports the "
        "driver. The second securedb row imports psycopg before the loop starts, to "
        "separate the two. " + SHARED,
    )


def lag_result(rows: list[dict[str, Any]], limit: int, errors: int, **case: str) -> dict[str, Any]:
    """The verdict: securedb's worst wake-up delay against `limit`, with no errors."""
    ours = [r for r in rows if r["securedb"]]
    worst = max((r.get("max") or 0 for r in ours), default=0)
    met = all(harness.ok(r) for r in ours) and worst <= limit and not errors

    def said(r: dict[str, Any]) -> str:
        worst, median = harness.fmt_ns(r.get("max")), harness.fmt_ns(r["median"])
        if r["ratio"] and r["baseline"] != r["name"]:
            median += f", {r['ratio']:.2g}× the control's"
        return f"{r['name']} {worst} (median {median})"

    return {
        **case,
        "target": f"securedb's worst wake-up delay ≤ {harness.fmt_ns(limit)} (reported, "
        "never asserted in a test)",
        "met": met,
        "verdict": "worst: "
        + "; ".join(said(r) for r in ours)
        + "; others: "
        + "; ".join(said(r) for r in rows if not r["securedb"] and harness.ok(r)),
        "contenders": rows,
    }
