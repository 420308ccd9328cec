"""Django's PostgreSQL backend, with connections opened by securedb.

Django builds its connection parameters as usual; the endpoint and credentials are
securedb's (verify-full TLS, IAM token or secret, one retry after a refusal), the
database name is the one Django asks for on each connection, and the rest (Django's
adapters context, cursor factory, ``prepare_threshold``, OPTIONS) goes through the
adapter's merge point to psycopg. With ``OPTIONS["pool"]`` (Django 5.1+) Django's
psycopg_pool opens each new connection the same way.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.db.backends.base.base import NO_DB_ALIAS  # type: ignore[import-untyped]
from django.db.backends.postgresql import base  # type: ignore[import-untyped]

from securedb import pooling
from securedb.contrib.django._backend import Endpoint, driver_args
from securedb.drivers import postgres
from securedb.errors import ConfigError

# Pool options that would route connections around securedb.
OWNED_POOL_OPTIONS = {
    "connection_class": "securedb's connection class opens every pooled connection",
    "conninfo": "the endpoint comes from HOST, PORT, USER and NAME",
    "kwargs": "put driver arguments in OPTIONS",
}


class _Psycopg:
    """psycopg as Django's wrapper sees it, except that ``connect`` goes through securedb."""

    def __init__(self, wrapper: DatabaseWrapper) -> None:
        self.connect = wrapper.securedb_connect

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]
    # Django's pools are per alias; securedb's backend keeps its own.
    _connection_pools: dict[str, Any] = {}  # noqa: RUF012
    _pools_lock = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.securedb = Endpoint("postgresql")
        self.Database = _Psycopg(self)

    def securedb_connect(self, **params: Any) -> psycopg.Connection[Any]:
        """A connection for Django's parameters: the dbname it asks for, OPTIONS checked."""
        args = _postgres_args(params, self.settings_dict)
        conn: psycopg.Connection[Any] = self.securedb.connector(self.settings_dict).connect(**args)
        return conn

    @property
    def pool(self) -> Any:
        """Django's psycopg_pool for this alias, each new connection opened by securedb.

        Made on first use, and made again if ``NAME`` changed since (the test runner
        switches to the test database): no pooled connection goes to the old database.
        """
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        name = self.settings_dict["NAME"]
        pool = self._connection_pools.get(self.alias)
        if pool is not None and pool.securedb_name == name:
            return pool
        new = self._securedb_pool({} if pool_options is True else dict(pool_options))
        with self._pools_lock:
            pool = self._connection_pools.get(self.alias)
            if pool is None or pool.securedb_name != name:
                self._connection_pools[self.alias], stale = new, pool
            else:
                stale = new  # another thread made it first
        if stale is not None:
            stale.close()
        return self._connection_pools[self.alias]

    def close_pool(self) -> None:
        with self._pools_lock:
            pool = self._connection_pools.pop(self.alias, None)
        if pool is not None:
            pool.close()

    def _securedb_pool(self, pool_options: dict[str, Any]) -> Any:
        if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
        owned = sorted(OWNED_POOL_OPTIONS.keys() & pool_options)
        if owned:
            why = OWNED_POOL_OPTIONS[owned[0]]
            raise ConfigError(f"OPTIONS['pool'][{owned[0]!r}] is securedb's: {why}")
        pool_class = _pool_class()
        args = _postgres_args(self.get_connection_params(), self.settings_dict)
        dbname = args.pop("dbname", None)
        connector = self.securedb.new_connector(self.settings_dict)
        try:
            cfg = connector.config
            postgres.check_args(args, cfg.is_local)  # now: the pool's workers would only log it
            postgres.check_environment()
            enable_checks = self.settings_dict["CONN_HEALTH_CHECKS"]
            return pool_class(
                connector,
                self.settings_dict["NAME"],
                connection_class=pooling.connection_class(connector),
                kwargs={**args, "dbname": dbname, "autocommit": True},  # autocommit: as Django
                open=False,
                configure=self._configure_connection,
                check=pool_class.check_connection if enable_checks else None,
                name=f"securedb django {self.alias} {cfg.endpoint}",
                **pool_options,
            )
        except TypeError as exc:
            connector.close()
            raise ConfigError(f"OPTIONS['pool']: {exc}; see psycopg_pool.ConnectionPool") from None
        except BaseException:
            connector.close()
            raise


def _postgres_args(params: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """`driver_args`; ``dbname`` is Django's (NAME, or ``postgres`` for maintenance work)."""
    if "dbname" in (settings.get("OPTIONS") or {}):
        raise ConfigError("OPTIONS['dbname'] is not for securedb's backend: set NAME")
    return driver_args(params, settings)


@functools.cache
def _pool_class() -> Any:
    try:
        import psycopg_pool
    except ImportError as err:
        raise ImproperlyConfigured(
            "Error loading psycopg_pool module.\nDid you install 'securedb[postgresql]'?"
        ) from err

    class Pool(psycopg_pool.ConnectionPool[Any]):
        """Django's pool, holding the connector its connections are opened with."""

        def __init__(self, connector: Any, securedb_name: str | None, **kwargs: Any) -> None:
            self.securedb_name = securedb_name
            self._securedb_connector = connector
            super().__init__(**kwargs)

        def close(self, timeout: float = 5.0) -> None:
            """Close the pool, and release its credential cache."""
            try:
                super().close(timeout)
            finally:
                self._securedb_connector.close()

    return Pool
