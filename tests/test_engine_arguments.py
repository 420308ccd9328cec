"""SQLAlchemy's pool arguments are checked at engine() time, naming the argument.

SQLAlchemy checks some of them only when it uses them: at the first connection, or
once the pool is full. No server is needed: a bad value is refused before any connects.
"""

from __future__ import annotations

from typing import Any

import pytest

import securedb
from securedb import errors

URL = "postgresql://app:not-a-secret-9f2@127.0.0.1:1/app"

BAD = [
    ("pool_size", "abc", "an int of 0 or more (the connections kept open; 0: no limit)"),
    ("pool_size", 2.5, "an int of 0 or more (the connections kept open; 0: no limit)"),
    ("pool_size", True, "an int of 0 or more (the connections kept open; 0: no limit)"),
    ("pool_size", -1, "an int of 0 or more (the connections kept open; 0: no limit)"),
    (
        "max_overflow",
        "5",
        "an int of -1 or more (the connections opened beyond pool_size; -1: no limit)",
    ),
    ("pool_timeout", "30", "a number of seconds, 0 or more (the wait for a free connection)"),
    ("pool_timeout", -1, "a number of seconds, 0 or more (the wait for a free connection)"),
    ("pool_recycle", "1h", "a number of seconds (a connection's lifetime; -1: no limit)"),
    ("pool_pre_ping", "yes", "True or False"),
    ("pool_use_lifo", 1, "True or False"),
    ("echo_pool", "x", "None, True, False or 'debug'"),
    ("echo", "x", "None, True, False or 'debug'"),
    ("poolclass", "QueuePool", "a subclass of sqlalchemy.pool.Pool"),
    ("poolclass", dict, "a subclass of sqlalchemy.pool.Pool"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD)
@pytest.mark.parametrize("make", [securedb.engine, securedb.async_engine])
def test_bad_pool_argument(make: Any, name: str, value: object, expected: str) -> None:
    with pytest.raises(errors.ConfigError) as raised:
        make(URL, **{name: value})
    assert str(raised.value) == f"bad value for {name}: {value!r}; expected {expected}"
    assert raised.value.__context__ is None


@pytest.mark.parametrize(
    "options",
    [
        {"pool_size": 0, "max_overflow": -1},
        {"pool_size": 5, "max_overflow": 0, "pool_timeout": 2.5, "pool_recycle": -1},
        {"pool_pre_ping": False, "pool_use_lifo": True, "echo_pool": "debug", "echo": None},
    ],
)
def test_good_pool_arguments(options: dict[str, Any]) -> None:
    securedb.engine(URL, **options).dispose()
