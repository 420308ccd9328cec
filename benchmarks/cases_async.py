"""Async: pool checkout, `SELECT 1` on a checked-out connection, a new IAM connection.

securedb's async engine and pool are SQLAlchemy's and psycopg_pool's own, and its async
connections are psycopg's and aiomysql's own: these cases check that nothing securedb
adds shows on the hot path, against the bare driver, pool and engine, and the AWS
wrapper's asyncio API (`aws_advanced_python_wrapper.aio`). Each case runs on one event
loop (`benchmarks.async_harness`). MariaDB runs as app_user with its password where
connections overlap; its IAM (PAM) logins are used one connection at a time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from benchmarks import async_harness as aio
from benchmarks import harness
from benchmarks.context import Ctx, missing, pinned
from benchmarks.harness import Contender, Scale

LIMIT = 1.05
CONNECT_LIMIT = 1.10
WRAPPER, WRAPPER_PLUGINS = "aws_advanced_python_wrapper", "iam,failover"
PG_SA, MY_SA = "create_async_engine (bare, psycopg)", "create_async_engine (bare, aiomysql)"
PG_POOL = "psycopg_pool.AsyncConnectionPool (bare)"
RAW_PG, RAW_MY = "psycopg.AsyncConnection.connect (raw)", "aiomysql.connect (raw)"
ENGINE_DEFAULTS = {"pool_pre_ping": True, "pool_recycle": 1500}  # securedb's
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


class Makers:
    """The engines, pools and connections the cases compare, each verify-full."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def ours(self, url: str, **options: Any) -> Callable[[], Any]:
        import securedb

        return lambda: securedb.async_engine(url, ca_bundle=self.ctx.ca, **options)

    def our_pool(self, url: str, **options: Any) -> Callable[[], Any]:
        import securedb

        return lambda: securedb.async_pool(url, ca_bundle=self.ctx.ca, **options)

    def our_connection(self, url: str, **options: Any) -> aio.Call:
        import securedb

        return lambda: securedb.async_connect(url, ca_bundle=self.ctx.ca, **options)

    def bare_pg(self) -> Any:
        from sqlalchemy.ext.asyncio import create_async_engine

        url = self.ctx.pg_password_url.replace("postgresql://", "postgresql+psycopg_async://")
        args = {"sslmode": "verify-full", "sslrootcert": self.ctx.ca}
        return create_async_engine(url, connect_args=args, **ENGINE_DEFAULTS)

    def bare_my(self, scheme: str = "mysql+aiomysql://", query: str = "") -> Any:
        from sqlalchemy.ext.asyncio import create_async_engine

        url = self.ctx.my_password_url.replace("mysql://", scheme) + query
        args = {"ssl": self.ctx.aiomysql_kwargs()["ssl"]}
        return create_async_engine(url, connect_args=args, **ENGINE_DEFAULTS)

    def wrapper_my_engine(self) -> Any:
        return self.bare_my("mysql+aws_wrapper_aiomysql://", "?wrapper_plugins=failover")

    def wrapper_pg_engine(self) -> Any:
        """The AWS wrapper's async SQLAlchemy dialect for PostgreSQL, with its IAM plugin."""
        from sqlalchemy.ext.asyncio import create_async_engine

        args = self.ctx.wrapper_kwargs("iam")
        url = f"postgresql+aws_wrapper_psycopg://{args.pop('user')}@localhost:{args.pop('port')}"
        del args["host"], args["dbname"]
        return create_async_engine(f"{url}/app", connect_args=args, **ENGINE_DEFAULTS)

    def bare_pool(self) -> Any:
        import psycopg_pool

        return psycopg_pool.AsyncConnectionPool(
            "",
            kwargs=self.ctx.pg_kwargs(iam=False),
            min_size=1,  # securedb.async_pool's defaults
            max_size=10,
            max_lifetime=1500.0,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            open=False,
        )

    async def raw_pg(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(**self.ctx.pg_kwargs())

    async def raw_my(self) -> Any:
        import aiomysql

        return await aiomysql.connect(**self.ctx.aiomysql_kwargs())

    async def wrapper_pg(self, plugins: str = WRAPPER_PLUGINS) -> Any:
        import psycopg
        from aws_advanced_python_wrapper.aio import AsyncAwsWrapperConnection

        kwargs = self.ctx.wrapper_kwargs(plugins)
        return await AsyncAwsWrapperConnection.connect(psycopg.AsyncConnection.connect, **kwargs)

    async def wrapper_my(self) -> Any:
        import aiomysql
        from aws_advanced_python_wrapper.aio import AsyncAwsWrapperConnection

        kwargs = {**self.ctx.aiomysql_kwargs(), "plugins": "failover"}
        return await AsyncAwsWrapperConnection.connect(aiomysql.connect, **kwargs)


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
        title="Async per-query cost on a checked-out connection (`SELECT 1`)",
        unit="ns per query",
        method=f"{scale.fresh_rounds} interleaved rounds of batches of about "
        f"{harness.fmt_ns(scale.batch_ns)} on one event loop; a call is `await "
        "cursor.execute('SELECT 1')` and `await cursor.fetchone()` on the driver's (or the "
        "AWS wrapper's) connection, or `(await conn.exec_driver_sql('SELECT 1')).fetchone()` "
        "on a SQLAlchemy `AsyncConnection`. PostgreSQL as iam_user (securedb's token, or one "
        "minted for the raw connection), MariaDB as app_user with its password. "
        + WRAPPER_WHY.format(WRAPPER_PLUGINS)
        + " "
        + FRESH_WHY
        + f" Placement: {placement}."
        + NOISE
        + left_out_text(left_out),
    )


def async_new_connection(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    import aiomysql
    import psycopg

    m = Makers(ctx)
    pg_raw = "psycopg.AsyncConnection.connect (token signed once)"
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
        title="Async new connection: TLS verify-full + IAM token",
        unit="ns per connect + close",
        method=f"{scale.connect_rounds} interleaved rounds on one event loop, one connection "
        "at a time, each timed on its own from the call to `close()`. securedb's token comes "
        "from its cache; the raw drivers get a token signed once before the rounds; the AWS "
        "wrapper's IAM plugin caches its token (`iam_host` names the bed's RDS-style "
        "endpoint: it refuses localhost)." + NOISE,
    )


def verdict(rows: list[dict[str, Any]], limit: float, **case: str) -> dict[str, Any]:
    """The case's result: securedb's worst ratio against `limit`; the wrapper's ratios."""
    ours = [r for r in rows if r["securedb"]]
    worst = max(ours, key=lambda r: r["ratio"] or 0)
    met = all(harness.ok(r) for r in ours) and (worst["ratio"] or 0) <= limit
    peers = [r for r in rows if r["name"].startswith("AWS") and r["ratio"]]
    return {
        **case,
        "target": f"≤ {limit}× the bare driver, pool or engine; the AWS wrapper's ratio reported",
        "met": met,
        "verdict": f"worst {worst['ratio'] or 0:.3f}× ({worst['name']})"
        + "".join(f"; {r['name']} {r['ratio']:.2f}×" for r in peers),
        "contenders": rows,
    }


def left_out_text(left_out: list[str]) -> str:
    if not left_out:
        return ""
    return " Could not run on this bed, so not in the table: " + "; ".join(left_out) + "."
