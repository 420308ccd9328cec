"""securedb's process state, in one owner: the credential caches in use, `connect()`'s
connectors, the Aurora topologies, `reset()`, and the one at-fork hook.

It imports nothing else of securedb, so every part can register with it: an object with
locks or threads of its own (a credential cache, a Secrets Manager client, a connector)
calls `track`, and a module with state of its own (the botocore session) calls `on_fork`.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar

__all__ = ["memo", "on_fork", "registry", "reset", "topologies", "track"]


class Closable(Protocol):
    def close(self) -> None: ...


class Forkable(Protocol):
    def after_fork(self) -> None: ...


C = TypeVar("C", bound=Closable)
V = TypeVar("V")


class Registry:
    """One credential cache per identity, counted; the last release closes it.

    Releases come from finalizers, and the garbage collector runs those wherever it
    starts, including inside `acquire` on the thread that holds the lock. So a release
    never waits for the lock: it is queued, and whoever holds the lock settles the queue
    after letting go.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[Hashable, tuple[Any, int]] = {}
        self.pending: collections.deque[tuple[Hashable, Any]] = collections.deque()

    def acquire(self, key: Hashable, make: Callable[[], C]) -> C:
        with self.lock:
            cache, count = self.entries.get(key) or (make(), 0)
            self.entries[key] = (cache, count + 1)
        self.settle()
        return cache

    def release(self, key: Hashable, acquired: Closable) -> None:
        self.pending.append((key, acquired))
        self.settle()

    def settle(self) -> None:
        """Apply the queued releases, unless another holds the lock (it settles them)."""
        while self.pending:
            if not self.lock.acquire(blocking=False):
                return
            closing: list[Closable] = []
            try:
                while self.pending:
                    key, acquired = self.pending.popleft()
                    cache, count = self.entries.get(key, (None, 0))
                    if cache is not acquired:  # reset() forgot that one: not ours
                        continue
                    if count > 1:
                        self.entries[key] = (cache, count - 1)
                    else:
                        del self.entries[key]
                        closing.append(cache)
            finally:
                self.lock.release()
            for cache in closing:
                cache.close()

    def reset(self) -> None:
        with self.lock:
            caches = [cache for cache, _ in self.entries.values()]
            self.entries.clear()
            self.pending.clear()
        self.settle()
        for cache in caches:
            cache.close()

    def after_fork(self) -> None:
        self.lock = threading.Lock()


class Memo:
    """`connect()`'s connectors by the caller's arguments, the least recently used closed."""

    SIZE = 64

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

    def get(self, key: Hashable, make: Callable[[], C]) -> C:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
                return found  # type: ignore[no-any-return]
        made = make()  # outside the lock: it may read a secret
        with self.lock:
            kept: C = self.entries.setdefault(key, made)
            full = len(self.entries) > self.SIZE
            evicted = self.entries.popitem(last=False)[1] if full else None
        if kept is not made:
            made.close()  # another thread made one first
        if evicted is not None:
            evicted.close()
        return kept

    def reset(self) -> None:
        with self.lock:
            entries = list(self.entries.values())
            self.entries.clear()
        for entry in entries:
            entry.close()

    def after_fork(self) -> None:
        self.lock = threading.Lock()


class Shared:
    """One value per key while somebody holds it (the Aurora topologies: one per cluster,
    for every connector of it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        with self.lock:
            value = self.values.get(key)
            if value is None:
                value = self.values[key] = make()
            return value

    def reset(self) -> None:
        with self.lock:
            self.values.clear()

    def after_fork(self) -> None:
        self.lock = threading.Lock()


registry = Registry()
memo = Memo()
topologies = Shared()
_tracked: weakref.WeakSet[Forkable] = weakref.WeakSet()
_fork_hooks: list[Callable[[], None]] = []


def track(obj: Forkable) -> None:
    """Call ``obj.after_fork()`` in a forked child, for as long as `obj` lives."""
    _tracked.add(obj)


def on_fork(hook: Callable[[], None]) -> None:
    """Call `hook` in a forked child (a module's own state)."""
    _fork_hooks.append(hook)


def reset() -> None:
    """Close every credential cache and `connect()`'s connectors; share no topology known
    so far.

    For tests and benchmarks only, so that nothing one of them made is left for the
    next: an engine or pool still in use keeps working, but shares no cache any more.
    """
    memo.reset()
    registry.reset()
    topologies.reset()


def _after_fork_in_child() -> None:
    """In a forked child only the forking thread is left: a lock another thread held
    would never be released, and the parent's threads and connections are not the
    child's. Every part starts afresh."""
    parts: list[Forkable] = [registry, memo, topologies, *_tracked]
    for part in parts:
        part.after_fork()
    for hook in _fork_hooks:
        hook()


os.register_at_fork(after_in_child=_after_fork_in_child)
