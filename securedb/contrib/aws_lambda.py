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

Engines are kept per call shape (the arguments), at most `MAX_ENGINES` of them: a handler
that builds its arguments from the event would otherwise keep an engine, its connection
and its credential reference for every shape it ever saw. Past the bound the least
recently used engine is disposed, which closes its pooled connection and releases its
credential cache; a caller still holding it can go on using it (it connects again).
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any

from securedb.config import Config

if TYPE_CHECKING:
    import sqlalchemy

__all__ = ["LAMBDA_DEFAULTS", "MAX_ENGINES", "cached_engine"]

# One connection per execution environment (Lambda runs one invocation at a time in it);
# the proxy multiplexes many environments onto a few database connections.
LAMBDA_DEFAULTS: dict[str, Any] = {
    "pool_size": 1,
    "max_overflow": 0,
    "pool_pre_ping": True,
    "refresh": "lazy",
}

MAX_ENGINES = 8  # engines kept per execution environment, the least recently used dropped

_engines: collections.OrderedDict[tuple[str | Config | None, str], sqlalchemy.engine.Engine] = (
    collections.OrderedDict()
)
_lock = threading.Lock()


def cached_engine(url: str | Config | None = None, **options: Any) -> sqlalchemy.engine.Engine:
    """The engine for these arguments: created on first call, the same one afterwards.

    Equal arguments share it; a `Config` counts by value (its password included). Of
    `MAX_ENGINES` engines kept, the least recently used is disposed when another is made.
    """
    from securedb.sqlalchemy import engine as make_engine

    key = (url, repr(sorted(options.items())))
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            _engines.move_to_end(key)
            return engine
        defaults = dict(LAMBDA_DEFAULTS)
        if isinstance(url, Config):
            defaults.pop("refresh")
        engine = _engines[key] = make_engine(url, **{**defaults, **options})
        evicted = _engines.popitem(last=False)[1] if len(_engines) > MAX_ENGINES else None
    if evicted is not None:
        evicted.dispose()
    return engine
