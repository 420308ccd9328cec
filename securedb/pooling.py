"""pool(): a psycopg_pool ConnectionPool whose every new connection securedb opens.

psycopg_pool calls ``connection_class.connect()`` for each physical connection; the
class given here sends that call to the `Connector`, so credentials are resolved (and
refreshed, and retried once if refused) per connection. `invalidate()` discards every
connection made before it, at checkout: after a failover none to the old writer survives.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from securedb.config import Config, split_options
from securedb.connector import Connector
from securedb.drivers import postgres
from securedb.errors import ConfigError

if TYPE_CHECKING:
    import psycopg_pool

__all__ = ["pool"]

POOL_DEFAULTS: dict[str, Any] = {
    "min_size": 1,
    "max_size": 10,
    "max_lifetime": 1500.0,
    "open": True,
}


def pool(url: str | Config | None = None, **options: Any) -> psycopg_pool.ConnectionPool[Any]:
    """A psycopg_pool `ConnectionPool` for a PostgreSQL `url`, credentials per connection.

    Options are securedb's (see `Config`) and ``ConnectionPool``'s (``min_size``,
    ``max_size``, ``timeout``, ``max_lifetime`` ...). Defaults: 1 to 10 connections,
    each checked before it is handed out, replaced after 25 minutes. The pool has one
    more method, ``invalidate()``, which `run_transaction` calls after a failover.

    Raises:
        ConfigError: an option is invalid, or the URL is not PostgreSQL.
    """
    cfg, pool_options = split_options(url, options)
    if pool_options.get("conninfo"):
        raise ConfigError(
            "pool() takes no conninfo: pass the endpoint as the URL, and driver "
            "arguments in connect_args= or kwargs="
        )
    connector = Connector(cfg)
    try:
        return _pool(connector, pool_options)
    except BaseException:
        connector.close()
        raise


def _pool(connector: Connector, pool_options: dict[str, Any]) -> psycopg_pool.ConnectionPool[Any]:
    import psycopg
    import psycopg_pool

    cfg = connector.config
    if cfg.engine != "postgresql":
        raise ConfigError("pool() is for PostgreSQL (psycopg_pool); use engine() for MySQL")
    kwargs = pool_options.get("kwargs")
    if isinstance(kwargs, Mapping):
        postgres.check_args(kwargs, cfg.host)  # early; every connection checks them again
    generation = itertools.count()
    current = [next(generation)]
    born: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    class Connection(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            conn = connector.connect(**kwargs)
            born[conn] = current[0]
            return conn

    def check(conn: Any) -> None:
        if born.get(conn, -1) < current[0]:
            conn.close()  # closed, so the pool discards it instead of taking it back
            raise psycopg.OperationalError("made before a failover; discarded")
        psycopg_pool.ConnectionPool.check_connection(conn)

    class Pool(psycopg_pool.ConnectionPool[Any]):
        def invalidate(self) -> None:
            """Discard every connection made so far, as each is next checked out."""
            current[0] = next(generation)

        def close(self, timeout: float = 5.0) -> None:
            """Close the pool, and release its credential cache."""
            try:
                super().close(timeout)
            finally:
                connector.close()

    defaults = {**POOL_DEFAULTS, "check": check, "name": f"securedb {cfg.endpoint}"}
    try:
        return Pool(connection_class=Connection, **{**defaults, **pool_options})
    except TypeError as exc:
        raise ConfigError(f"{exc}; see psycopg_pool.ConnectionPool for pool options") from None
