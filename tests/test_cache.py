"""The refresh-ahead cache, with a hand-driven clock and a counting source (pure logic)."""

from __future__ import annotations

import gc
import threading
import time
import traceback

import pytest

from securedb.credentials.base import Credential
from securedb.credentials.cache import BACKOFF_INITIAL, RefreshAheadCache
from securedb.errors import CredentialsError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Counts fetches; each value lives `life` seconds and is refreshed after `ahead`."""

    def __init__(self, clock: Clock, life: float = 90, ahead: float = 60) -> None:
        self.name, self.clock, self.life, self.ahead = "test source", clock, life, ahead
        self.fetches, self.fail, self.delay = 0, False, 0.0
        self.fetched_on: list[threading.Thread] = []  # the thread of each fetch
        self.error: type[Exception] = CredentialsError
        self.rejected: list[Credential | None] = []
        self.lock = threading.Lock()
        self.entered = threading.Event()  # set when a fetch starts
        self.gate: threading.Event | None = None  # if set, a fetch waits for it

    def fetch(self, rejected: Credential | None = None) -> Credential:
        with self.lock:
            self.fetches += 1
            number = self.fetches
            self.fetched_on.append(threading.current_thread())
        self.rejected.append(rejected)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        time.sleep(self.delay)
        if self.fail:
            raise self.error("source down")
        now = self.clock()
        return Credential("u", f"p{number}", now + self.ahead, now + self.life, str(number))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_cached_value_served_without_fetching(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    first = cache.get()
    clock.now += 59
    assert cache.get() is first
    assert source.fetches == 1


def test_lazy_refreshes_ahead_of_expiry(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    cache.get()
    clock.now += 61
    assert cache.get().password == "p2"
    assert source.fetches == 2


def test_stale_but_valid_served_while_refresh_fails_with_backoff(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    first = cache.get()
    source.fail = True
    clock.now += 61
    assert cache.get() is first  # refresh failed: the valid value is still served
    assert source.fetches == 2
    assert cache.get() is first  # within the backoff: no new attempt
    assert source.fetches == 2
    clock.now += 1
    cache.get()
    assert source.fetches == 3  # backoff over: tried again
    source.fail = False
    clock.now += 2
    assert cache.get().password == "p4"


def test_expired_value_is_never_served(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    cache.get()
    source.fail = True
    clock.now += 91
    with pytest.raises(CredentialsError):
        cache.get()


def test_no_value_and_a_failing_source_fetches_once_per_backoff(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    cache.get()
    source.fail = True
    clock.now += 91  # expired
    for _ in range(10):  # over 0.45 of the first backoff, which lasts 0.5 to 1 BACKOFF_INITIAL
        with pytest.raises(CredentialsError, match="source down"):
            cache.get()
        clock.now += BACKOFF_INITIAL / 20
    assert source.fetches == 2  # the fill, then one attempt for ten callers
    clock.now += BACKOFF_INITIAL  # past the first backoff
    with pytest.raises(CredentialsError, match="source down"):
        cache.get()
    assert source.fetches == 3
    with pytest.raises(CredentialsError, match="source down"):
        cache.get()
    assert source.fetches == 3  # within the second backoff (1 to 2 BACKOFF_INITIAL)
    source.fail = False
    clock.now += 3 * BACKOFF_INITIAL
    assert cache.get().password == "p4"


def test_a_failure_raised_again_is_new_and_holds_nothing_of_the_fetch(clock: Clock) -> None:
    source = Source(clock)
    source.fail = True
    cache = RefreshAheadCache(source, "lazy", clock)
    with pytest.raises(CredentialsError) as first:
        cache.get()
    with pytest.raises(CredentialsError) as again:
        cache.get()
    assert source.fetches == 1
    assert again.value is not first.value
    assert type(again.value) is type(first.value)
    assert str(again.value) == str(first.value)
    assert again.value.__cause__ is None
    assert again.value.__context__ is None
    frames = [frame.name for frame in traceback.extract_tb(again.value.__traceback__)]
    assert "fetch" not in frames


def test_a_foreign_failure_is_raised_again_by_its_class_alone(clock: Clock) -> None:
    """Only securedb errors are known to hold no secret; another error's text is not repeated,
    neither when it happens nor within the backoff."""
    source = Source(clock)
    source.fail, source.error = True, RuntimeError
    cache = RefreshAheadCache(source, "lazy", clock)
    with pytest.raises(CredentialsError, match="RuntimeError") as first:
        cache.get()
    with pytest.raises(CredentialsError, match="RuntimeError") as again:
        cache.get()
    assert "source down" not in str(first.value) + str(again.value)
    assert source.fetches == 1


def test_a_refusal_fetches_even_within_a_backoff(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    first = cache.get()
    source.fail = True
    clock.now += 61
    assert cache.get() is first  # the refresh failed: a backoff is in force
    source.fail = False
    cache.invalidate(first)
    assert cache.get().password == "p3"


def test_single_flight_64_threads_at_expiry(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    cache.get()
    clock.now += 91  # expired: every caller must wait for a new value
    source.delay = 0.2
    barrier = threading.Barrier(64)
    results: list[str] = []

    def caller() -> None:
        barrier.wait()
        results.append(cache.get().password)

    threads = [threading.Thread(target=caller) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert source.fetches == 2
    assert results == ["p2"] * 64


def test_refresh_ahead_does_not_block_other_callers(clock: Clock) -> None:
    """In lazy mode one caller refreshes; the others keep the still-valid value."""
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    first = cache.get()
    clock.now += 61
    source.gate, source.entered = threading.Event(), threading.Event()
    refresher = threading.Thread(target=cache.get)
    refresher.start()
    assert source.entered.wait(5)  # the refresh is in flight, held at the gate
    served: list[Credential] = []
    other = threading.Thread(target=lambda: served.append(cache.get()))
    other.start()
    other.join(5)
    assert served == [first]  # answered while the refresh is still held
    source.gate.set()
    refresher.join(5)
    assert source.fetches == 2


def test_invalidate_forces_one_refetch_rate_limited(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    first = cache.get()
    assert cache.invalidate(first) is True
    second = cache.get()
    assert second.password == "p2"
    assert source.rejected[-1] is first
    # Within a second of the last forced refresh: no fetch, and no point in a retry.
    assert cache.invalidate(second) is False
    assert cache.get() is second
    assert cache.invalidate(first) is True  # an old value: the current one is another
    clock.now += 1.5
    assert cache.invalidate(second) is True
    assert cache.get().password == "p3"


def test_invalidate_of_an_old_value_is_ignored(clock: Clock) -> None:
    source = Source(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    first = cache.get()
    clock.now += 61
    cache.get()
    cache.invalidate(first)
    assert cache.get().password == "p2"
    assert source.fetches == 2


def test_background_refreshes_on_its_thread() -> None:
    source = Source(Clock())
    source.clock = time.monotonic  # type: ignore[assignment]
    source.life, source.ahead = 30, 0.2
    cache = RefreshAheadCache(source, "background")
    try:
        assert cache.get().password == "p1"
        thread = cache._thread
        assert thread is not None
        # `fetches` counts a fetch when it starts; wait for the new value to be served.
        deadline = time.monotonic() + 5
        while cache.get().password == "p1" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.get().password != "p1"
        assert source.fetched_on[1] is thread
    finally:
        cache.close()
    assert not thread.is_alive()


def test_background_thread_ends_with_its_cache() -> None:
    source = Source(Clock())
    source.clock = time.monotonic  # type: ignore[assignment]
    source.life, source.ahead = 30, 0.2
    cache = RefreshAheadCache(source, "background")
    cache.get()
    thread = cache._thread
    assert thread is not None
    del cache
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_lazy_starts_no_thread(clock: Clock) -> None:
    before = set(threading.enumerate())
    cache = RefreshAheadCache(Source(clock), "lazy", clock)
    cache.get()
    clock.now += 61
    cache.get()
    assert cache._thread is None
    assert set(threading.enumerate()) - before == set()


def test_credential_repr_hides_the_password() -> None:
    cred = Credential("app", "hunter2-secret", version="v1")
    assert "hunter2" not in repr(cred)
    assert "hunter2" not in str(cred)
