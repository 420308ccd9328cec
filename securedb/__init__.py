"""securedb: reach Amazon RDS and Aurora the secure way by default.

``import securedb`` is light: the drivers, SQLAlchemy and botocore load on first use.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing would cost more than all of securedb

__version__ = "0.1.0"
__all__ = [
    "Config",
    "__version__",
    "async_connect",
    "async_engine",
    "async_pool",
    "connect",
    "engine",
    "errors",
    "pool",
    "run_transaction",
    "run_transaction_async",
]

if TYPE_CHECKING:
    from typing import Any

    from securedb import errors
    from securedb.config import Config
    from securedb.connector import async_connect, connect
    from securedb.failover import run_transaction, run_transaction_async
    from securedb.pooling import async_pool, pool
    from securedb.sqlalchemy import async_engine, engine

_LAZY = {
    "Config": ("securedb.config", "Config"),
    "connect": ("securedb.connector", "connect"),
    "async_connect": ("securedb.connector", "async_connect"),
    "engine": ("securedb.sqlalchemy", "engine"),
    "async_engine": ("securedb.sqlalchemy", "async_engine"),
    "pool": ("securedb.pooling", "pool"),
    "async_pool": ("securedb.pooling", "async_pool"),
    "errors": ("securedb.errors", None),
    "run_transaction": ("securedb.failover", "run_transaction"),
    "run_transaction_async": ("securedb.failover", "run_transaction_async"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'securedb' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
