"""`cached_engine` keeps a few engines, not one per call shape forever.

A handler that builds its options from the event (a database per tenant, driver arguments
per request) would otherwise grow one engine, pool and credential reference per shape for
the life of the execution environment.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest
import sqlalchemy as sa

from securedb import _state
from securedb.config import Config
from securedb.contrib import aws_lambda
from securedb.credentials import identity

RDS = "app.proxy-abc123.eu-west-2.rds.amazonaws.com"
BOUND = 8  # engines kept per execution environment


@pytest.fixture(autouse=True)
def no_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no cached engine, and leaves none behind in the module."""
    monkeypatch.setattr(aws_lambda, "_engines", collections.OrderedDict())


def shape(n: int) -> tuple[str, dict[str, Any]]:
    """Call `n`'s arguments: a user of its own, so a credential identity of its own too."""
    return f"postgresql://user{n}@{RDS}:5432/app", {"auth": "iam"}


def held(n: int) -> bool:
    """Whether a credential reference for call `n`'s identity is held in the registry."""
    url, options = shape(n)
    return identity(Config.from_url(url, **options, refresh="lazy")) in _state.registry.entries


def engine_for(n: int) -> sa.Engine:
    url, options = shape(n)
    return aws_lambda.cached_engine(url, **options)


def test_500_call_shapes_keep_at_most_the_bound() -> None:
    disposed: list[int] = []
    engines = []
    for n in range(500):
        engine = engine_for(n)
        sa.event.listen(engine, "engine_disposed", lambda _, n=n: disposed.append(n))
        engines.append(engine)
    kept = 500 - BOUND
    assert len(aws_lambda._engines) == BOUND
    assert disposed == list(range(kept))  # the least recently used, in order, each once
    assert [n for n in range(500) if held(n)] == list(range(kept, 500))  # references released
    assert list(aws_lambda._engines.values()) == engines[kept:]
    assert aws_lambda.MAX_ENGINES == BOUND


def test_the_warm_engine_is_the_same_one_and_is_not_evicted() -> None:
    first = engine_for(0)
    for n in range(1, 100):
        engine_for(n)
        assert engine_for(0) is first  # call 0 between every other: always the most recent
    assert held(0)
    assert sum(held(n) for n in range(100)) == BOUND
