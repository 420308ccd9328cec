"""The classes `pool()` and `async_pool()` return: psycopg_pool's pools, with `invalidate()`.

Imported on first use of a pool (it imports psycopg_pool).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg_pool

if TYPE_CHECKING:
    from securedb._otel import PoolMetrics
    from securedb.connector import Connector
    from securedb.pooling import _Generations

__all__ = ["AsyncConnectionPool", "ConnectionPool"]


class ConnectionPool(psycopg_pool.ConnectionPool[Any]):
    """psycopg_pool's ``ConnectionPool`` whose every connection securedb opens."""

    def __init__(
        self,
        connector: Connector,
        generations: _Generations,
        metrics: PoolMetrics | None,
        **kwargs: Any,
    ) -> None:
        self._securedb_connector = connector
        self._securedb_generations = generations
        self._securedb_metrics = metrics
        super().__init__(**kwargs)
        if metrics is not None:
            metrics.watch(self)

    def getconn(self, timeout: float | None = None) -> Any:
        metrics = self._securedb_metrics
        if metrics is None:
            return super().getconn(timeout)
        with metrics.acquiring(psycopg_pool.PoolTimeout) as request:
            conn = super().getconn(timeout)
        metrics.checked_out(conn, request)
        return conn

    def putconn(self, conn: Any) -> None:
        if self._securedb_metrics is not None:
            self._securedb_metrics.returned(conn)
        super().putconn(conn)

    def invalidate(self) -> None:
        """Discard every connection made so far, as each is next checked out (a failover)."""
        self._securedb_generations.invalidate()
        self._securedb_connector.failed_over()

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool, and release its credential cache."""
        try:
            super().close(timeout)
        finally:
            self._securedb_connector.close()


class AsyncConnectionPool(psycopg_pool.AsyncConnectionPool[Any]):
    """psycopg_pool's ``AsyncConnectionPool`` whose every connection securedb opens."""

    def __init__(
        self,
        connector: Connector,
        generations: _Generations,
        metrics: PoolMetrics | None,
        **kwargs: Any,
    ) -> None:
        self._securedb_connector = connector
        self._securedb_generations = generations
        self._securedb_metrics = metrics
        super().__init__(**kwargs)
        if metrics is not None:
            metrics.watch(self)

    async def getconn(self, timeout: float | None = None) -> Any:
        metrics = self._securedb_metrics
        if metrics is None:
            return await super().getconn(timeout)
        with metrics.acquiring(psycopg_pool.PoolTimeout) as request:
            conn = await super().getconn(timeout)
        metrics.checked_out(conn, request)
        return conn

    async def putconn(self, conn: Any) -> None:
        if self._securedb_metrics is not None:
            self._securedb_metrics.returned(conn)
        await super().putconn(conn)

    def invalidate(self) -> None:
        """Discard every connection made so far, as each is next checked out (a failover)."""
        self._securedb_generations.invalidate()
        self._securedb_connector.failed_over()

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool, and release its credential cache."""
        try:
            await super().close(timeout)
        finally:
            self._securedb_connector.close()
