"""Async: pool checkout, `SELECT 1` on a checked-out connection, a new IAM connection.

securedb's async engine and pool are SQLAlchemy's and psycopg_pool's (or asyncpg's) own,
and its async connections are psycopg's, asyncpg's and aiomysql's own: these cases check
that nothing securedb adds shows on the hot path, against the bare driver, pool and
engine (`benchmarks.async_makers`), and the AWS wrapper's asyncio API
(`aws_advanced_python_wrapper.aio`); securedb's asyncpg rows are held to tighter bounds.
Each case runs on one event loop (`benchmarks.async_harness`). MariaDB runs as app_user
with its password where connections overlap; its IAM (PAM) logins are used one
connection at a time.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from benchmarks import async_harness as aio
from benchmarks import harness
from benchmarks.async_makers import WRAPPER, WRAPPER_PLUGINS, Makers
from benchmarks.context import Ctx, missing, pinned
from benchmarks.harness import Contender, Scale

LIMIT, ASYNCPG_LIMIT = 1.05, 1.03
CONNECT_LIMIT, ASYNCPG_CONNECT_LIMIT = 1.10, 1.05
PG_SA, MY_SA = "create_async_engine (bare, psycopg)", "create_async_engine (bare, aiomysql)"
PG_POOL = "psycopg_pool.AsyncConnectionPool (bare)"
RAW_PG, RAW_MY = "psycopg.AsyncConnection.connect (raw)", "aiomysql.connect (raw)"
APG_SA, APG_POOL = "create_async_engine (bare, asyncpg)", "asyncpg.create_pool (bare)"
FRESH_WHY = (
    "Each batch gets a new engine, pool or connection (made, warmed and closed outside the "
    "timing): where the scheduler puts a connection's server process decides its round trip."
)
NOISE = (
    " The machine (two CPUs) was shared with other work during the run: rounds are "
    "interleaved so its drift falls on every contender alike, and the intervals show how far "
    "that noise lets each ratio move."
)
WRAPPER_WHY = (
    "The AWS wrapper runs its psycopg connections with plugins `{}` (`iam_host` names the "
    "bed's RDS-style endpoint: its IAM plugin refuses localhost) and its aiomysql ones with "
    "`failover`; the failover plugin accepts the non-Aurora bed and stays idle."
)


def contenders_of(
    loop: Any, table: list[tuple[str, str, aio.Opener]], op: aio.Op
) -> tuple[list[Contender], list[str]]:
    """A contender per row (name, baseline, opener); a peer that fails its probe is left out."""
    contenders, left_out = [], []
    for name, baseline, opener in table:
        if name.startswith("AWS"):
            why = missing(WRAPPER) or aio.probe(loop, opener, op)
            if why:
                why = re.sub(r" [(][^)]*[.]py[)]", "", why)  # a file path of this machine
                left_out.append(f"{name}: {why}")
                continue
        run = aio.fresh(loop, opener, op)
        contenders.append(Contender(name, run, baseline, securedb=name.startswith("securedb")))
    return contenders, left_out


def async_checkout(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    m = Makers(ctx)
    iam = {"auth": "iam"}
    engines = [
        ("securedb.async_engine (password)", PG_SA, m.ours(ctx.pg_password_url)),
        ("securedb.async_engine (IAM)", PG_SA, m.ours(ctx.pg_iam_url, **iam)),
        ("AWS wrapper async engine (iam plugin)", PG_SA, m.wrapper_pg_engine),
        (PG_SA, PG_SA, m.bare_pg),
        ("securedb.async_engine (MySQL, password)", MY_SA, m.ours(ctx.my_password_url)),
        ("AWS wrapper async engine (MySQL, failover)", MY_SA, m.wrapper_my_engine),
        (MY_SA, MY_SA, m.bare_my),
    ]
    pools = [
        ("securedb.async_pool (password)", PG_POOL, m.our_pool(ctx.pg_password_url)),
        ("securedb.async_pool (IAM)", PG_POOL, m.our_pool(ctx.pg_iam_url, **iam)),
        (PG_POOL, PG_POOL, m.bare_pool),
    ]
    table: list[tuple[str, str, aio.Opener]] = [
        (name, base, lambda make=make: aio.engine(make)) for name, base, make in engines
    ] + [(name, base, lambda make=make: aio.pool(make)) for name, base, make in pools]
    with aio.event_loop() as loop, pinned(ctx.bed) as placement:
        contenders, left_out = contenders_of(loop, table, aio.checkout)
        harness.interleave(contenders, dataclasses.replace(scale, rounds=scale.fresh_rounds))
    return verdict(
        harness.results(contenders),
        LIMIT,
        title="Async pool checkout + return (pre-ping / check on both)",
        unit="ns per checkout",
        method=f"{scale.fresh_rounds} interleaved rounds of batches of about "
        f"{harness.fmt_ns(scale.batch_ns)} on one event loop; each call is `async with "
        "engine.connect(): pass` (pre-ping on) or `async with pool.connection(): pass` (the "
        "check callback on). The bare engines and pool use the same settings and app_user's "
        "password; the IAM rows sign as iam_user. The AWS wrapper's MySQL engine is its "
        "`mysql+aws_wrapper_aiomysql` dialect with the `failover` plugin. "
        + FRESH_WHY
        + f" Placement: {placement}."
        + NOISE
        + left_out_text(left_out),
    )


def async_per_query(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    m = Makers(ctx)
    pg_iam = {"auth": "iam"}
    table: list[tuple[str, str, aio.Opener]] = [
        (
            "securedb.async_connect (psycopg)",
            RAW_PG,
            lambda: aio.connection(m.our_connection(ctx.pg_iam_url, **pg_iam)),
        ),
        (
            "securedb.async_pool (psycopg)",
            RAW_PG,
            lambda: aio.pool_connection(m.our_pool(ctx.pg_iam_url, **pg_iam)),
        ),
        (RAW_PG, RAW_PG, lambda: aio.connection(m.raw_pg)),
        (f"AWS wrapper async ({WRAPPER_PLUGINS})", RAW_PG, lambda: aio.connection(m.wrapper_pg)),
        (
            "securedb.async_engine (psycopg)",
            PG_SA,
            lambda: aio.engine_connection(m.ours(ctx.pg_iam_url, **pg_iam)),
        ),
        (PG_SA, PG_SA, lambda: aio.engine_connection(m.bare_pg)),
        (
            "securedb.async_pool (asyncpg)",
            APG_POOL,
            lambda: aio.acquired(m.our_pool(m.asyncpg_url(), driver="asyncpg", **pg_iam)),
        ),
        (APG_POOL, APG_POOL, lambda: aio.acquired(m.bare_asyncpg_pool)),
        (
            "securedb.async_engine (asyncpg)",
            APG_SA,
            lambda: aio.engine_connection(m.ours(m.asyncpg_url(), **pg_iam)),
        ),
        (APG_SA, APG_SA, lambda: aio.engine_connection(m.bare_asyncpg_engine)),
        (
            "securedb.async_connect (aiomysql)",
            RAW_MY,
            lambda: aio.connection(m.our_connection(ctx.my_password_url)),
        ),
        (RAW_MY, RAW_MY, lambda: aio.connection(m.raw_my)),
        ("AWS wrapper async (aiomysql, failover)", RAW_MY, lambda: aio.connection(m.wrapper_my)),
        (
            "securedb.async_engine (aiomysql)",
            MY_SA,
            lambda: aio.engine_connection(m.ours(ctx.my_password_url)),
        ),
        (MY_SA, MY_SA, lambda: aio.engine_connection(m.bare_my)),
    ]
    with aio.event_loop() as loop, pinned(ctx.bed) as placement:
        contenders, left_out = contenders_of(loop, table, aio.select_one)
        harness.interleave(contenders, dataclasses.replace(scale, rounds=scale.fresh_rounds))
    return verdict(
        harness.results(contenders),
        LIMIT,
        ASYNCPG_LIMIT,
        title="Async per-query cost on a checked-out connection (`SELECT 1`)",
        unit="ns per query",
        method=f"{scale.fresh_rounds} interleaved rounds of batches of about "
        f"{harness.fmt_ns(scale.batch_ns)} on one event loop; a call is `await "
        "cursor.execute('SELECT 1')` and `await cursor.fetchone()` on the driver's (or the "
        "AWS wrapper's) connection, `await conn.fetchval('SELECT 1')` on an asyncpg "
        "connection from `pool.acquire()`, or `(await conn.exec_driver_sql('SELECT "
        "1')).fetchone()` on a SQLAlchemy `AsyncConnection`. PostgreSQL as iam_user "
        "(securedb's token, or one minted for the bare connection, pool or engine; bare "
        "asyncpg gets an `ssl.SSLContext` verifying the bed's CA, host name check on), "
        "MariaDB as app_user with its password. "
        + WRAPPER_WHY.format(WRAPPER_PLUGINS)
        + " "
        + FRESH_WHY
        + f" Placement: {placement}."
        + NOISE
        + left_out_text(left_out),
    )


def async_new_connection(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    import aiomysql
    import asyncpg
    import psycopg

    m = Makers(ctx)
    pg_raw = "psycopg.AsyncConnection.connect (token signed once)"
    apg_raw = "asyncpg.connect (token signed once)"
    apg_kwargs = ctx.asyncpg_kwargs()
    my_raw = "aiomysql.connect (token signed once)"
    pg_kwargs, my_kwargs = ctx.pg_kwargs(), ctx.aiomysql_kwargs(iam=True)
    connects: list[tuple[str, str, aio.Call]] = [
        (
            "securedb.async_connect (psycopg, cached token)",
            pg_raw,
            m.our_connection(ctx.pg_iam_url, auth="iam"),
        ),
        (pg_raw, pg_raw, lambda: psycopg.AsyncConnection.connect(**pg_kwargs)),
        ("AWS wrapper async (iam plugin)", pg_raw, lambda: m.wrapper_pg("iam")),
        (
            "securedb.async_connect (asyncpg, cached token)",
            apg_raw,
            m.our_connection(m.asyncpg_url(), auth="iam"),
        ),
        (apg_raw, apg_raw, lambda: asyncpg.connect(**apg_kwargs)),
        (
            "securedb.async_connect (aiomysql, cached token)",
            my_raw,
            m.our_connection(ctx.my_iam_url, auth="iam"),
        ),
        (my_raw, my_raw, lambda: aiomysql.connect(**my_kwargs)),
    ]

    def connect_and_close(connect: aio.Call) -> aio.Call:
        async def once() -> None:
            await aio.close(await connect())

        return once

    with aio.event_loop() as loop:
        contenders = [
            Contender(
                name,
                aio.each(loop, connect_and_close(connect)),
                base,
                securedb=name.startswith("securedb"),
                unavailable=missing(WRAPPER) if name.startswith("AWS") else None,
            )
            for name, base, connect in connects
        ]
        rounds = dataclasses.replace(scale, rounds=scale.connect_rounds)
        harness.interleave(contenders, rounds, calibrated=False)
    return verdict(
        harness.results(contenders),
        CONNECT_LIMIT,
        ASYNCPG_CONNECT_LIMIT,
        title="Async new connection: TLS verify-full + IAM token",
        unit="ns per connect + close",
        method=f"{scale.connect_rounds} interleaved rounds on one event loop, one connection "
        "at a time, each timed on its own from the call to `close()`. securedb's token comes "
        "from its cache; the raw drivers get a token signed once before the rounds (raw asyncpg "
        "an `ssl.SSLContext` made once, verifying the bed's CA, host name check on); the AWS "
        "wrapper's IAM plugin caches its token (`iam_host` names the bed's RDS-style "
        "endpoint: it refuses localhost)." + NOISE,
    )


def verdict(
    rows: list[dict[str, Any]], limit: float, asyncpg_limit: float | None = None, **case: str
) -> dict[str, Any]:
    """The case's result: securedb's worst ratio against `limit` (`asyncpg_limit` for its
    asyncpg rows, a thinner layer held to a tighter bound); the wrapper's ratios."""

    def bound(r: dict[str, Any]) -> float:
        return asyncpg_limit if asyncpg_limit and "asyncpg" in r["name"] else limit

    ours = [r for r in rows if r["securedb"]]
    worst = max(ours, key=lambda r: r["ratio"] or 0)
    met = all(harness.ok(r) and (r["ratio"] or 0) <= bound(r) for r in ours)
    apg = [r for r in ours if "asyncpg" in r["name"]]
    worst_apg = max(apg, key=lambda r: r["ratio"] or 0, default=None)
    peers = [r for r in rows if r["name"].startswith("AWS") and r["ratio"]]
    return {
        **case,
        "target": f"≤ {limit}× the bare driver, pool or engine"
        + (f" (≤ {asyncpg_limit}× on asyncpg)" if asyncpg_limit else "")
        + "; the AWS wrapper's ratio reported",
        "met": met,
        "verdict": f"worst {worst['ratio'] or 0:.3f}× ({worst['name']})"
        + (
            f"; asyncpg worst {worst_apg['ratio'] or 0:.3f}× ({worst_apg['name']})"
            if worst_apg
            else ""
        )
        + "".join(f"; {r['name']} {r['ratio']:.2f}×" for r in peers),
        "contenders": rows,
    }


def left_out_text(left_out: list[str]) -> str:
    if not left_out:
        return ""
    return " Could not run on this bed, so not in the table: " + "; ".join(left_out) + "."
