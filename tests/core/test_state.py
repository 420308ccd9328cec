"""Process state (`securedb._state`): the registry, the memo, the shared values, reset and
the at-fork hook, on fresh instances with plain objects. Pure logic, no bed."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import pytest

from securedb import _state
from securedb.config import Config
from securedb.connector import Connector


class Closable:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Forkable:
    def __init__(self) -> None:
        self.forked = 0

    def after_fork(self) -> None:
        self.forked += 1


def held(lock: Any) -> bool:
    """Whether another holds `lock` (taking it, when free, and giving it back)."""
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


def test_the_registry_counts_and_the_last_release_closes() -> None:
    registry = _state.Registry()
    made: list[Closable] = []

    def make() -> Closable:
        made.append(Closable())
        return made[-1]

    first = registry.acquire("k", make)
    assert registry.acquire("k", make) is first
    assert (len(made), registry.entries["k"]) == (1, (first, 2))
    registry.release("k", first)
    assert (registry.entries["k"], first.closed) == ((first, 1), 0)
    registry.release("k", first)
    assert ("k" not in registry.entries, first.closed) == (True, 1)
    assert not held(registry.lock)


def test_a_release_waits_for_no_lock_and_the_holder_settles_it() -> None:
    registry = _state.Registry()
    cache = registry.acquire("k", Closable)
    with registry.lock:
        registry.release("k", cache)  # the collector, inside acquire: queued, not waited for
        assert registry.entries["k"] == (cache, 1)
    registry.settle()
    assert "k" not in registry.entries
    assert cache.closed == 1
    assert not registry.pending


def test_reset_closes_every_cache_and_forgets_the_releases_to_come() -> None:
    registry = _state.Registry()
    one, two = registry.acquire("a", Closable), registry.acquire("b", Closable)
    registry.reset()
    assert (registry.entries, one.closed, two.closed) == ({}, 1, 1)
    registry.release("a", one)  # a handle from before the reset: nothing of the new entry
    fresh = registry.acquire("a", Closable)
    assert registry.entries["a"] == (fresh, 1)
    assert one.closed == 1
    assert not held(registry.lock)


def test_the_memo_keeps_the_most_recent_and_closes_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_state.Memo, "SIZE", 2)
    memo = _state.Memo()
    a, b, c = Closable(), Closable(), Closable()
    assert memo.get("a", lambda: a) is a
    assert memo.get("b", lambda: b) is b
    assert memo.get("a", Closable) is a  # found: now the most recent
    assert memo.get("c", lambda: c) is c
    assert (list(memo.entries), b.closed, a.closed) == (["a", "c"], 1, 0)
    memo.reset()
    assert (memo.entries, a.closed, c.closed) == ({}, 1, 1)
    assert not held(memo.lock)


def test_the_memo_closes_what_lost_a_race() -> None:
    memo = _state.Memo()
    first, late = Closable(), Closable()

    def make() -> Closable:
        memo.entries["k"] = first  # another thread stored one while this one was made
        return late

    assert memo.get("k", make) is first
    assert (first.closed, late.closed) == (0, 1)


def test_a_shared_value_lives_while_held() -> None:
    shared = _state.Shared()
    value = shared.get("k", Forkable)
    assert shared.get("k", Forkable) is value
    shared.reset()
    assert shared.get("k", Forkable) is not value
    del value
    assert shared.get("k", Forkable) is not None
    assert not held(shared.lock)


def test_the_fork_hook_gives_every_part_new_locks_and_calls_each_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the child only the forking thread is left: a lock another thread held is new."""
    parts = {"registry": _state.Registry(), "memo": _state.Memo(), "shared": _state.Shared()}
    monkeypatch.setattr(_state, "registry", parts["registry"])
    monkeypatch.setattr(_state, "memo", parts["memo"])
    monkeypatch.setattr(_state, "topologies", parts["shared"])
    monkeypatch.setattr(_state, "_fork_hooks", [])
    monkeypatch.setattr(_state, "_tracked", weakref.WeakSet())  # the suite's live objects stay
    tracked, calls = Forkable(), []
    _state.track(tracked)
    _state.on_fork(lambda: calls.append("hook"))
    connector = Connector(Config.from_url("postgresql://app:pw@localhost/app"))
    for part in [*parts.values(), connector]:
        part.__dict__["_lock" if part is connector else "lock"].acquire()
    _state._after_fork_in_child()
    assert [held(p.lock) for p in parts.values()] == [False, False, False]
    assert not held(connector._lock)
    assert (tracked.forked, calls) == (1, ["hook"])
    connector.close()


def test_track_holds_weakly() -> None:
    tracked = Forkable()
    _state.track(tracked)
    assert tracked in _state._tracked
    gone = weakref.ref(tracked)
    del tracked
    assert gone() is None  # tracking kept nothing alive


def test_a_thread_holding_the_registry_lock_at_fork_time_does_not_hold_the_childs() -> None:
    registry = _state.Registry()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with registry.lock:
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(5)
    registry.after_fork()
    assert not held(registry.lock)
    release.set()
    thread.join(5)
