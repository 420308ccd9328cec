"""Carrying out an Aurora topology plan (`securedb.topology`) with the connector's visits.

A plan decides; this runs it, sync or async, and closes every connection it opened but
did not choose. The visits themselves (connect to an instance, read the topology) are the
connector's, since they go through its merge point and credential caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from securedb import topology
from securedb._translate import detached, translate
from securedb.config import Config
from securedb.drivers import Driver, Failure
from securedb.errors import TopologyError
from securedb.topology import Missed, Outcome, Pause, Plan, Reached, Topology, Visit

__all__ = ["answered", "close_quietly", "close_quietly_async", "run", "run_async", "unread"]


def run(plan: Plan, visit: Callable[[Visit], Outcome]) -> Any:
    """The connection the plan chose, or the clean error to raise."""
    opened: list[Any] = []
    chosen = None
    outcome: Outcome = None
    try:
        while True:
            step = plan.send(outcome)
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                outcome = None
                continue
            outcome = visit(step)
            if isinstance(outcome, Reached):
                opened.append(outcome.conn)
    except StopIteration as done:
        chosen = done.value
        return chosen
    except Exception as exc:
        return detached(exc)
    finally:
        for conn in opened:
            if conn is not chosen:
                close_quietly(conn)


async def run_async(plan: Plan, visit: Callable[[Visit], Awaitable[Outcome]]) -> Any:
    """`run`'s twin: pauses and visits on the event loop."""
    opened: list[Any] = []
    chosen = None
    outcome: Outcome = None
    try:
        while True:
            step = plan.send(outcome)
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                outcome = None
                continue
            outcome = await visit(step)
            if isinstance(outcome, Reached):
                opened.append(outcome.conn)
    except StopIteration as done:
        chosen = done.value
        return chosen
    except Exception as exc:
        return detached(exc)
    finally:
        for conn in opened:
            if conn is not chosen:
                await close_quietly_async(conn)


def answered(cluster: Topology, answer: topology.Answer | None, where: str, conn: Any) -> Reached:
    """What a topology read came to: a snapshot, a lie, or no topology at all (not Aurora:
    this cluster's connections go by DNS from now on)."""
    if answer is None:
        cluster.dns_only = True
        return Reached(conn, None)
    try:
        return Reached(conn, topology.snapshot(answer, cluster.cluster, where))
    except TopologyError as exc:
        return Reached(conn, None, exc)


def unread(exc: Exception, driver: Driver, cfg: Config) -> Outcome:
    """The topology query failed (its connection is closed already): the connection was
    lost, or this is not Aurora."""
    failure = driver.classify(exc)
    if failure is Failure.FAILOVER:
        return Missed(translate(exc, failure, cfg, ""), True)
    error = TopologyError(
        f"could not read the Aurora topology on {cfg.endpoint} ({type(exc).__name__}); "
        "pass topology='off' to connect through the endpoint's DNS name only",
        host=cfg.host,
        port=cfg.port,
    )
    return Missed(error, False)


def close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


async def close_quietly_async(conn: Any) -> None:
    with contextlib.suppress(Exception):
        result = conn.close()
        if asyncio.iscoroutine(result):
            await result
