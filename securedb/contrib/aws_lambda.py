"""Lambda handlers behind RDS Proxy: one engine per execution environment, reused warm.

::

    from securedb.contrib.aws_lambda import cached_engine

    def handler(event, context):
        engine = cached_engine("postgresql://app@myproxy.proxy-abc.eu-west-2.rds.amazonaws.com/app",
                               auth="iam")
        with engine.connect() as conn:
            ...

The first (cold) invocation creates the engine; warm invocations reuse it and its one
connection. No thread is started: credentials refresh lazily, on the connect path. A
connection the proxy closed while the environment was frozen is replaced by the
pre-ping at checkout, so the invocation does not fail.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from securedb.config import Config

if TYPE_CHECKING:
    import sqlalchemy

__all__ = ["LAMBDA_DEFAULTS", "cached_engine"]

# One connection per execution environment (Lambda runs one invocation at a time in it);
# the proxy multiplexes many environments onto a few database connections.
LAMBDA_DEFAULTS: dict[str, Any] = {
    "pool_size": 1,
    "max_overflow": 0,
    "pool_pre_ping": True,
    "refresh": "lazy",
}

_engines: dict[tuple[str | Config | None, str], sqlalchemy.engine.Engine] = {}
_lock = threading.Lock()


def cached_engine(url: str | Config | None = None, **options: Any) -> sqlalchemy.engine.Engine:
    """The engine for these arguments: created on first call, the same one afterwards.

    Equal arguments share it; a `Config` counts by value (its password included).
    """
    key = (url, repr(sorted(options.items())))
    engine = _engines.get(key)
    if engine is None:
        from securedb.sqlalchemy import engine as make_engine

        with _lock:
            engine = _engines.get(key)
            if engine is None:
                defaults = dict(LAMBDA_DEFAULTS)
                if isinstance(url, Config):
                    defaults.pop("refresh")
                engine = _engines[key] = make_engine(url, **{**defaults, **options})
    return engine
