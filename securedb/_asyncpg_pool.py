"""The class `async_pool(..., driver="asyncpg")` returns: asyncpg's own Pool, whose every
connection securedb opens (through the pool's ``connect=`` hook).

Imported on first use of such a pool (it imports asyncpg).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import asyncpg

from securedb import _otel

if TYPE_CHECKING:
    from securedb.connector import Connector

__all__ = ["AsyncpgPool"]

# asyncpg.create_pool's defaults, but a pool that starts with one connection, as `pool()`.
POOL_DEFAULTS: dict[str, Any] = {
    "min_size": 1,
    "max_size": 10,
    "max_queries": 50000,
    "max_inactive_connection_lifetime": 300.0,
}


class AsyncpgPool(asyncpg.Pool):  # type: ignore[misc]
    """asyncpg's ``Pool``; `invalidate()` replaces every connection after a failover."""

    def __init__(self, connector: Connector, **options: Any) -> None:
        self._securedb_connector = connector
        metrics = _otel.pool_metrics(_otel.pool_name(connector.config), _counts)
        self._securedb_metrics = metrics

        async def connect(*_: Any, loop: Any = None, **args: Any) -> Any:
            # connection_class, record_class and the caller's connect kwargs: every one goes
            # through the merge point, the endpoint and TLS from securedb.
            start = time.perf_counter()
            conn = await connector.connect_async(**args)
            if metrics is not None:
                metrics.created(start)
            return conn

        super().__init__(
            **{
                **POOL_DEFAULTS,
                "loop": None,
                "connection_class": asyncpg.Connection,
                "record_class": asyncpg.Record,
                **options,
                "connect": connect,
            }
        )
        if metrics is not None:
            metrics.watch(self)

    async def _acquire(self, timeout: float | None) -> Any:
        metrics = self._securedb_metrics
        if metrics is None:
            return await super()._acquire(timeout)
        with metrics.acquiring(asyncio.TimeoutError) as request:
            conn = await super()._acquire(timeout)
        metrics.checked_out(conn, request)
        return conn

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        if self._securedb_metrics is not None:
            self._securedb_metrics.returned(connection)
        await super().release(connection, timeout=timeout)

    async def invalidate(self) -> None:
        """Replace every connection made so far, as each is next released (a failover)."""
        await self.expire_connections()
        self._securedb_connector.failed_over()

    async def close(self) -> None:
        """Close the pool, and release its credential cache."""
        try:
            await super().close()
        finally:
            self._securedb_connector.close()

    def terminate(self) -> None:
        try:
            super().terminate()
        finally:
            self._securedb_connector.close()


def _counts(pool: AsyncpgPool) -> tuple[int, int]:
    """Idle and used connections, for the metrics."""
    idle = pool.get_idle_size()
    return idle, pool.get_size() - idle
