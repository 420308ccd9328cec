"""The refresh backoff, exactly: how long after each failure, and what callers get meanwhile."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from securedb import errors
from securedb.credentials import cache as cache_module
from securedb.credentials.base import Credential
from securedb.credentials.cache import BACKOFF_INITIAL, BACKOFF_MAX, RefreshAheadCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Down:
    name = "secret 'rds/app'"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.fetches = 0

    def fetch(self, rejected: Credential | None = None) -> Credential:
        self.fetches += 1
        raise self.error


@pytest.fixture
def bounds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """random.uniform returns its upper bound; the bounds asked for are recorded."""
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    monkeypatch.setattr(cache_module.random, "uniform", uniform)
    return asked


def test_backoff_doubles_from_half_a_second_to_thirty(
    bounds: list[tuple[float, float]], caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    source = Down(errors.CredentialsError("secret 'rds/app' not read", host="db", port=5432))
    cache = RefreshAheadCache(source, "lazy", clock)
    waits = []
    with caplog.at_level(logging.WARNING, "securedb.credentials"):
        for _ in range(9):
            with pytest.raises(errors.CredentialsError):
                cache.get()
            waits.append(cache._retry_at - clock.now)
            clock.now = cache._retry_at
    assert BACKOFF_INITIAL == 0.5
    assert BACKOFF_MAX == 30.0
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert bounds[:3] == [(0.25, 0.5), (0.5, 1.0), (1.0, 2.0)]
    assert source.fetches == 9
    assert caplog.records[1].getMessage() == (
        "refreshing secret 'rds/app' failed (CredentialsError), attempt 2; retrying in 1.0 s"
    )


def test_within_the_backoff_the_failure_again_with_its_endpoint(
    bounds: list[tuple[float, float]],
) -> None:
    clock = Clock()
    source = Down(errors.CredentialsError("secret 'rds/app' not read", host="db", port=5432))
    cache = RefreshAheadCache(source, "lazy", clock)
    with pytest.raises(errors.CredentialsError) as first:
        cache.get()
    clock.now += 0.4
    with pytest.raises(errors.CredentialsError) as again:
        cache.get()
    assert source.fetches == 1
    assert again.value is not first.value
    assert (str(again.value), again.value.host, again.value.port) == (
        "secret 'rds/app' not read",
        "db",
        5432,
    )


def test_a_foreign_failure_leaves_and_is_replayed_by_its_class_and_the_source(
    bounds: list[tuple[float, float]],
) -> None:
    clock = Clock()
    cache = RefreshAheadCache(Down(KeyError("pw-leak")), "lazy", clock)
    with pytest.raises(errors.CredentialsError) as first:
        cache.get()
    with pytest.raises(errors.CredentialsError) as again:
        cache.get()
    assert (
        str(first.value)
        == str(again.value)
        == (
            "secret 'rds/app' not fetched: KeyError while fetching it (its details are withheld: "
            "they may hold a secret); check the AWS credentials and settings this process sees, "
            "e.g. with `securedb check`"
        )
    )
    assert (first.value.__cause__, first.value.__context__) == (None, None)


class Timed:
    """Values refreshed at +60 s and expiring at +90 s, numbered."""

    name = "timed"

    def __init__(self, clock: Clock) -> None:
        self.clock, self.count, self.fail = clock, 0, False

    def fetch(self, rejected: Credential | None = None) -> Credential:
        if self.fail:
            raise errors.CredentialsError("down")
        self.count += 1
        now = self.clock()
        return Credential("app", f"pw{self.count}", now + 60, now + 90, f"v{self.count}")


def test_the_edges_of_refresh_and_expiry(bounds: list[tuple[float, float]]) -> None:
    clock = Clock()
    source = Timed(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    cache.get()
    clock.now = 159.999
    assert cache.get().version == "v1"
    clock.now = 160.0  # the refresh point itself: refreshed
    assert cache.get().version == "v2"
    source.fail = True
    clock.now = 220.0  # v2 due; the refresh fails: v2 still valid, a backoff of 0.5 s
    assert cache.get().version == "v2"
    clock.now = 220.5  # the end of the backoff itself: tried again (and fails again)
    assert cache.get().version == "v2"
    assert cache._retry_at == 221.5
    clock.now = 250.0  # v2's expiry itself: never served, the failure is raised
    with pytest.raises(errors.CredentialsError):
        cache.get()


def test_expired_at_the_exact_second_within_a_backoff_refetches_at_its_end(
    bounds: list[tuple[float, float]],
) -> None:
    clock = Clock()
    source = Timed(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    source.fail = True
    with pytest.raises(errors.CredentialsError):
        cache.get()
    source.fail = False
    clock.now = 100.5  # the backoff's end itself: a fetch, not the failure again
    assert cache.get().version == "v1"


def test_background_is_the_default_and_its_thread_is_a_named_daemon() -> None:
    clock = Clock()
    cache = RefreshAheadCache(Timed(clock), clock=clock)
    try:
        assert cache.background is True
        cache.get()
        thread = cache._thread
        assert thread is not None
        assert thread.daemon is True
        assert thread.name == "securedb-refresh timed"
    finally:
        cache.close()
    assert RefreshAheadCache(Timed(clock), "lazy", clock).background is False


class Background:
    """Values due for refresh at once (refresh_at = now), valid for a minute; a failure on cue.

    Each fetch sets `fetched` so the test waits on it, with a deadline, never on time.
    """

    name = "background"

    def __init__(self, fail_on: set[int]) -> None:
        self.count, self.fail_on = 0, fail_on
        self.fetched = threading.Condition()

    def fetch(self, rejected: Credential | None = None) -> Credential:
        with self.fetched:
            self.count += 1
            self.fetched.notify_all()
            number = self.count
        if number in self.fail_on:
            raise errors.CredentialsError("down")
        now = time.monotonic()
        return Credential("app", f"pw{number}", now, now + 60, f"v{number}")

    def wait_for(self, count: int) -> bool:
        with self.fetched:
            return self.fetched.wait_for(lambda: self.count >= count, timeout=10)


def test_the_refresher_keeps_refreshing_past_a_failure(
    bounds: list[tuple[float, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "BACKOFF_INITIAL", 0.0)  # no backoff to wait out
    source = Background(fail_on={2})
    cache = RefreshAheadCache(source, "background")
    try:
        cache.get()
        assert source.wait_for(4), "the refresher stopped after a refresh or a failure"
        thread = cache._thread
        assert thread is not None
        assert thread.is_alive()
    finally:
        cache.close()


def test_get_cached_is_what_get_returns_without_a_fetch() -> None:
    """The async path hops to a thread only when this returns None."""
    clock = Clock()
    source = Timed(clock)
    cache = RefreshAheadCache(source, "lazy", clock)
    assert cache.get_cached() is None  # nothing cached: the caller fetches (in a thread)
    value = cache.get()
    assert cache.get_cached() is value
    clock.now = 159.999
    assert cache.get_cached() is value
    clock.now = 160.0
    assert cache.get_cached() is None  # a lazy refresh is due: the caller fetches
    source.fail = True
    assert cache.get() is value  # the refresh fails; the valid value is served
    assert cache.get_cached() is value  # within the backoff: no fetch, so no thread hop
    assert source.count == 1
    clock.now = 190.0
    assert cache.get_cached() is None  # expired
    background = RefreshAheadCache(Timed(clock), "background", clock)
    try:
        first = background.get()
        clock.now += 61
        assert background.get_cached() is first  # the refresher is woken; nobody waits
    finally:
        background.close()


def test_the_refresher_finds_no_value_after_a_refusal(bounds: list[tuple[float, float]]) -> None:
    """invalidate() leaves no value until the next fetch; the refresher must not trip on it."""
    clock = Clock()
    cache = RefreshAheadCache(Timed(clock), "lazy", clock)
    cache.invalidate(cache.get())
    assert cache._due_in() == 0.0
