"""One fresh process of the cold-secret lag case, and the ticker every lag case uses.

    python -m benchmarks.lag_child VARIANT < arguments.json

The process imports what VARIANT names (as an application would at the top of a module),
starts an event loop with a `Ticker`, awaits one connection made with the credentials
of an RDS-format secret, closes it and prints one JSON line: the worst wake-up delay
(ns), how long the connection took, and which heavy modules were imported before the
loop started. This module imports nothing heavy itself: botocore must not be loaded
before the variant runs.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

TICK_NS, WINDOW_NS = 1_000_000, 250_000_000
HEAVY = ("botocore", "boto3", "psycopg")


class Ticker:
    """Sleeps 1 ms again and again, and notes how late each wake-up is."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.lates: list[tuple[int, int]] = []  # (when the sleep started, ns late)

    async def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter_ns()
            await asyncio.sleep(TICK_NS / 1e9)
            self.lates.append((started, time.perf_counter_ns() - started - TICK_NS))

    def worst(self) -> int:
        return max((late for _, late in self.lates), default=0)

    def worst_per_window(self) -> list[float]:
        """The worst wake-up of each 250 ms window."""
        windows: dict[int, int] = {}
        first = self.lates[0][0] if self.lates else 0
        for started, late in self.lates:
            key = (started - first) // WINDOW_NS
            windows[key] = max(windows.get(key, 0), late)
        return [float(windows[k]) for k in sorted(windows)]


def pg(a: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": "localhost",
        "port": a["port"],
        "dbname": "app",
        "sslmode": "verify-full",
        "sslrootcert": a["ca"],
    }


async def securedb_async(a: dict[str, Any]) -> Any:
    import securedb

    return await securedb.async_connect(secret_id=a["secret"], ca_bundle=a["ca"])


async def securedb_blocking(a: dict[str, Any]) -> Any:
    import securedb

    return securedb.connect(secret_id=a["secret"], ca_bundle=a["ca"])


async def wrapper(a: dict[str, Any]) -> Any:
    import psycopg
    from aws_advanced_python_wrapper.aio import AsyncAwsWrapperConnection

    return await AsyncAwsWrapperConnection.connect(
        psycopg.AsyncConnection.connect,
        **pg(a),
        plugins="aws_secrets_manager",
        secrets_manager_secret_id=a["secret"],
        secrets_manager_region=a["region"],
    )


async def password(a: dict[str, Any]) -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(**pg(a), user=a["user"], password=a["password"])


async def boto3_blocking(a: dict[str, Any]) -> Any:
    import boto3
    import psycopg

    client = boto3.client("secretsmanager", region_name=a["region"])
    secret = json.loads(client.get_secret_value(SecretId=a["secret"])["SecretString"])
    user, password = secret["username"], secret["password"]
    return await psycopg.AsyncConnection.connect(**pg(a), user=user, password=password)


Connect = Callable[[dict[str, Any]], Awaitable[Any]]
# name: (modules imported before the loop starts, the connection awaited on the loop)
VARIANTS: dict[str, tuple[tuple[str, ...], Connect]] = {
    "securedb_async": (("securedb",), securedb_async),
    "securedb_async_psycopg_first": (("securedb", "psycopg"), securedb_async),
    "wrapper": (("psycopg", "aws_advanced_python_wrapper.aio"), wrapper),
    "password": (("psycopg",), password),
    "securedb_blocking": (("securedb",), securedb_blocking),
    "boto3_blocking": (("boto3", "psycopg"), boto3_blocking),
}


async def measure(connect: Connect, args: dict[str, Any]) -> tuple[int, int]:
    """The worst wake-up delay while `connect` runs, and how long it took (ns)."""
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    await asyncio.sleep(0.05)  # the ticker is running
    ticker.lates.clear()
    started = time.perf_counter_ns()
    conn = await connect(args)
    took = time.perf_counter_ns() - started
    await asyncio.sleep(0.01)  # a wake-up that a blocking call delayed is counted too
    ticker.stop.set()
    await ticking
    closing = conn.close()  # psycopg's is a coroutine, the wrapper's too
    if asyncio.iscoroutine(closing):
        await closing
    return ticker.worst(), took


def main() -> None:
    modules, connect = VARIANTS[sys.argv[1]]
    args = json.loads(sys.stdin.read())
    for module in modules:
        importlib.import_module(module)
    before = [m for m in HEAVY if m in sys.modules]
    worst, took = asyncio.run(measure(connect, args))
    print(json.dumps({"ns": worst, "took": took, "imported_before": before}))


if __name__ == "__main__":
    main()
