"""Pooled connections: checkout + return, and one `SELECT 1` on a checked-out connection.

securedb's pools are SQLAlchemy's and psycopg_pool's own, and a connection is the
driver's own: these cases check that nothing securedb adds shows on the hot path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmarks import harness
from benchmarks.context import Ctx, missing, pinned
from benchmarks.harness import Contender, Scale

CHECKOUT_LIMIT = 1.05
QUERY_LIMIT = 1.03

BARE_SA, BARE_POOL = "sqlalchemy.create_engine (bare)", "psycopg_pool.ConnectionPool (bare)"
RAW_PG, RAW_MY = "psycopg.connect (raw)", "pymysql.connect (raw)"
WRAPPER, WRAPPER_PLUGINS = "aws_advanced_python_wrapper", "iam,failover"
FRESH_WHY = (
    "a connection's round trip depends on where the scheduler puts its server process, "
    "so one fixed connection per contender would let chance decide the ratio."
)


def pool_checkout(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    import psycopg_pool
    import sqlalchemy

    import securedb

    def bare_engine() -> Any:
        return sqlalchemy.create_engine(
            ctx.pg_password_url.replace("postgresql://", "postgresql+psycopg://"),
            connect_args={"sslmode": "verify-full", "sslrootcert": ctx.ca},
            pool_pre_ping=True,  # securedb.engine's defaults
            pool_recycle=1500,
        )

    def bare_pool() -> Any:
        return psycopg_pool.ConnectionPool(
            "",
            kwargs=ctx.pg_kwargs(iam=False),
            min_size=1,  # securedb.pool's defaults
            max_size=10,
            max_lifetime=1500.0,
            check=psycopg_pool.ConnectionPool.check_connection,
            open=True,
        )

    engines = {
        "securedb.engine (password)": lambda: securedb.engine(
            ctx.pg_password_url, ca_bundle=ctx.ca
        ),
        "securedb.engine (IAM)": lambda: securedb.engine(
            ctx.pg_iam_url, auth="iam", ca_bundle=ctx.ca
        ),
        BARE_SA: bare_engine,
    }
    pools = {
        "securedb.pool (password)": lambda: securedb.pool(ctx.pg_password_url, ca_bundle=ctx.ca),
        "securedb.pool (IAM)": lambda: securedb.pool(ctx.pg_iam_url, auth="iam", ca_bundle=ctx.ca),
        BARE_POOL: bare_pool,
    }

    def engine_checkout(eng: Any) -> Any:
        def once() -> None:
            with eng.connect():
                pass

        return once

    def pool_checkout(pool: Any) -> Any:
        pool.wait()

        def once() -> None:
            with pool.connection():
                pass

        return once

    contenders = [
        Contender(
            name,
            harness.fresh(make, engine_checkout, lambda eng: eng.dispose()),
            BARE_SA,
            name != BARE_SA,
        )
        for name, make in engines.items()
    ] + [
        Contender(
            name,
            harness.fresh(make, pool_checkout, lambda pool: pool.close()),
            BARE_POOL,
            name != BARE_POOL,
        )
        for name, make in pools.items()
    ]
    with pinned(ctx.bed) as placement:
        harness.interleave(contenders, dataclasses.replace(scale, rounds=scale.fresh_rounds))
    rows = harness.results(contenders)
    ours = [r for r in rows if r["securedb"]]
    worst = max((r["ratio"] or 0 for r in ours), default=0)
    met = all(harness.ok(r) for r in ours) and worst <= CHECKOUT_LIMIT
    return {
        "title": "Pool checkout + return (pre-ping / check on both)",
        "unit": "ns per checkout",
        "target": f"≤ {CHECKOUT_LIMIT}× the bare pool",
        "met": met,
        "verdict": f"worst {worst:.3f}× bare",
        "contenders": rows,
        "method": f"{scale.fresh_rounds} interleaved rounds of batches of about "
        f"{harness.fmt_ns(scale.batch_ns)}; each call is `with engine.connect(): pass` "
        "(pre-ping on) or `with pool.connection(): pass` (the check callback on). The bare "
        "pools use the same settings, TLS verify-full, and app_user's password. Each "
        "batch gets a new engine or pool (made, warmed and disposed of outside the "
        "timing): " + FRESH_WHY + f" Placement: {placement}.",
    }


def per_query(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    import psycopg
    import pymysql

    import securedb

    def wrapper() -> Any:
        from aws_advanced_python_wrapper import AwsWrapperConnection

        return AwsWrapperConnection.connect(
            psycopg.Connection.connect, **ctx.wrapper_kwargs(WRAPPER_PLUGINS)
        )

    openers: list[tuple[str, str, bool, Any]] = [
        (
            "securedb.connect (psycopg)",
            RAW_PG,
            True,
            lambda: securedb.connect(ctx.pg_iam_url, auth="iam", ca_bundle=ctx.ca),
        ),
        (RAW_PG, RAW_PG, False, lambda: psycopg.connect(**ctx.pg_kwargs())),
        (f"AWS Advanced Python Wrapper ({WRAPPER_PLUGINS})", RAW_PG, False, wrapper),
        (
            "securedb.connect (PyMySQL)",
            RAW_MY,
            True,
            lambda: securedb.connect(ctx.my_iam_url, auth="iam", ca_bundle=ctx.ca),
        ),
        (RAW_MY, RAW_MY, False, lambda: pymysql.connect(**ctx.my_kwargs())),
    ]
    contenders = []
    for name, baseline, ours, opener in openers:
        contender = Contender(name, baseline=baseline, securedb=ours)
        contender.unavailable = missing(WRAPPER) if "AWS" in name else None
        contender.run = harness.fresh(opener, lambda conn: select_one(conn.cursor()), close)
        contenders.append(contender)
    with pinned(ctx.bed) as placement:
        harness.interleave(contenders, dataclasses.replace(scale, rounds=scale.fresh_rounds))
    rows = harness.results(contenders)
    ours_rows = [r for r in rows if r["securedb"]]
    worst = max((r["ratio"] or 0 for r in ours_rows), default=0)
    met = all(harness.ok(r) for r in ours_rows) and worst <= QUERY_LIMIT
    peer = rows[2]
    return {
        "title": "Per-query cost on a checked-out connection (`SELECT 1`)",
        "unit": "ns per query",
        "target": f"≤ {QUERY_LIMIT}× the raw driver; the AWS wrapper's ratio reported",
        "met": met,
        "verdict": f"worst {worst:.3f}× raw; AWS wrapper "
        + (f"{peer['ratio']:.2f}× raw" if peer["ratio"] else "did not run"),
        "contenders": rows,
        "method": f"{scale.fresh_rounds} interleaved rounds of batches of about "
        f"{harness.fmt_ns(scale.batch_ns)}; a call is `cursor.execute('SELECT 1')` and "
        "`fetchone()` on an open connection (TLS verify-full, IAM token); each batch gets "
        "a new connection (opened, warmed and closed outside the timing): "
        + FRESH_WHY
        + f" Placement: {placement}. "
        f"The AWS wrapper runs with plugins `{WRAPPER_PLUGINS}`: its IAM plugin needs an "
        "RDS host name, so `iam_host` names the bed's RDS-style endpoint; its failover "
        "plugin accepts the non-Aurora bed and stays idle.",
    }


def close(conn: Any) -> None:
    conn.close()


def select_one(cursor: Any) -> Any:
    def once() -> None:
        cursor.execute("SELECT 1")
        cursor.fetchone()

    return once
