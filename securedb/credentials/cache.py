"""A refresh-ahead cache for database credentials, shared by IAM tokens and secrets.

- A cached value is returned without a lock: one clock read and a comparison.
- Past its refresh time a value is still served while one refresh runs: on a daemon
  thread (``"background"``) or in the caller that noticed (``"lazy"``, no threads).
- Concurrent callers that find no usable value share one in-flight fetch.
- While refreshes fail, a value that has not expired keeps being served and the
  refresh is retried with exponential backoff. With no valid value, a caller within
  the backoff gets the last failure again (a new exception of the same class and
  message) without a fetch.
- `invalidate` (the database refused a credential) forces one refetch, rate-limited so
  a wrong password cannot hammer Secrets Manager.
- The cache is the credential path's boundary: whatever a source's fetch raises leaves
  `get` as a securedb error with no traceback, cause or context of the fetch, whose
  frames held keys, a secret's text or botocore's responses. An error of another class
  is known by its class alone: its message and arguments may hold a secret (an encoding
  error holds the whole text it failed on).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future

from securedb import _log, _otel, _state
from securedb.credentials.base import Credential, Source
from securedb.errors import CredentialsError, SecureDBError

__all__ = ["RefreshAheadCache"]

logger = _log.get("credentials")

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
MIN_FORCED_INTERVAL = 1.0
IDLE_CHECK = 60.0  # how often a sleeping refresher looks whether its cache is gone


class RefreshAheadCache:
    def __init__(
        self,
        source: Source,
        refresh: str = "background",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.background = refresh == "background"
        self._clock = clock
        self._value: Credential | None = None
        self._lock = threading.Lock()
        self._flight: Future[Credential] | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._failure: SecureDBError | None = None  # the last failure, copied, never raised
        self._forced_at = -MIN_FORCED_INTERVAL
        self._rejected: Credential | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        _state.track(self)

    def get(self) -> Credential:
        """The current credential, fetching it first if there is none usable."""
        value = self._value
        if value is not None and self._clock() < value.refresh_at:
            return value
        return self._get_slow(value)

    def get_cached(self) -> Credential | None:
        """What `get` would return without fetching (waking the refresher if it is due),
        else None; never any I/O.

        The async entry points return it inline, and run `get` in a thread otherwise:
        only when there is no valid value, or a lazy refresh is due and none is in flight.
        """
        value = self._value
        now = self._clock()
        if value is None or now >= value.expires_at:
            return None
        if now < value.refresh_at:
            return value
        if self.background:
            self._ensure_thread()
            self._wake.set()
            return value
        return value if now < self._retry_at or self._flight is not None else None

    def _get_slow(self, value: Credential | None) -> Credential:
        now = self._clock()
        if value is None or now >= value.expires_at:
            if now < self._retry_at and self._failure is not None:
                raise _again(self._failure)
            fresh = self._refresh(wait=True)
            assert fresh is not None  # a waiting caller always gets a value or an exception
            return fresh
        if self.background:
            self._ensure_thread()
            self._wake.set()
        elif now >= self._retry_at:
            try:
                return self._refresh(wait=False) or value
            except Exception:  # noqa: S110  (the stale value is still valid; _failed logged it)
                pass
        return value

    def _refresh(self, wait: bool) -> Credential | None:
        """Fetch a new value; concurrent callers share one fetch (single flight).

        A caller that finds a fetch in flight waits for it if `wait`, else gets None
        (it has a valid value to serve meanwhile).
        """
        with self._lock:
            value = self._value
            if value is not None and self._clock() < value.refresh_at:
                return value  # someone refreshed while we came here
            flight = self._flight
            if flight is not None:
                leader = False
            else:
                leader, flight = True, Future()
                self._flight = flight
        if not leader:
            return flight.result() if wait else None
        try:
            outcome = self._fetch()
        except BaseException:  # interrupted (KeyboardInterrupt): no waiter may hang on it
            self._flight = None
            flight.set_exception(
                CredentialsError(f"{self.source.name} not fetched: interrupted; try again")
            )
            raise
        if isinstance(outcome, SecureDBError):
            self._failed(outcome)
            self._flight = None
            flight.set_exception(outcome)
            raise outcome  # outside any except block: no context to follow
        self._value, self._rejected, self._failures, self._retry_at = outcome, None, 0, 0.0
        self._failure = None
        self._flight = None
        flight.set_result(outcome)
        if self.background:
            self._ensure_thread()
        return outcome

    def _fetch(self) -> Credential | SecureDBError:
        """The source's new credential, or the securedb error to raise instead, detached."""
        started = time.time_ns()
        try:
            fresh = self.source.fetch(self._rejected)
        except SecureDBError as exc:
            error = exc
        except Exception as exc:  # a bug, or a library's error: its text may hold a secret
            error = CredentialsError(
                f"{self.source.name} not fetched: {type(exc).__name__} while fetching it "
                "(its details are withheld: they may hold a secret); check the AWS "
                "credentials and settings this process sees, e.g. with `securedb check`"
            )
        else:
            _otel.fetched(self.source, started, None)
            return fresh
        error.__cause__ = error.__context__ = None
        _otel.fetched(self.source, started, error)
        return error.with_traceback(None)

    def _failed(self, error: SecureDBError) -> None:
        self._failure = _again(error)
        self._failures += 1
        wait = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (self._failures - 1))
        self._retry_at = self._clock() + random.uniform(wait / 2, wait)  # noqa: S311
        logger.warning(
            "refreshing %s failed (%s), attempt %d; retrying in %.1f s",
            self.source.name,
            type(error).__name__,
            self._failures,
            wait,
        )

    def invalidate(self, rejected: Credential) -> bool:
        """The database refused `rejected`: make the next `get` fetch anew.

        Does nothing if a newer value already replaced it, or if the last forced
        refresh was under a second ago. Returns whether the next `get` may give another
        credential than `rejected` (a retry with the same one would only be refused again).
        """
        with self._lock:
            if self._value is not rejected:
                return True
            now = self._clock()
            if now - self._forced_at < MIN_FORCED_INTERVAL:
                return False
            self._forced_at, self._rejected, self._value = now, rejected, None
            self._retry_at = 0.0  # a refusal is worth one fetch even within a backoff
        logger.info("%s was refused by the database; fetching it again", self.source.name)
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=_refresher,
                        args=(weakref.ref(self), self._wake),
                        daemon=True,
                        name=f"securedb-refresh {self.source.name}",
                    )
                    self._thread.start()

    def _due_in(self) -> float:
        """Seconds until the next background refresh is due."""
        value, now = self._value, self._clock()
        return max(value.refresh_at if value else now, self._retry_at) - now

    def after_fork(self) -> None:
        """In a forked child only the forking thread is left: forget the parent's threads.

        New locks (a parent's thread may have held one), no fetch in flight (no thread
        would ever complete it), and a new refresher thread on first use.
        """
        self._lock, self._thread, self._flight = threading.Lock(), None, None
        self._wake = threading.Event()

    def close(self) -> None:
        """Stop the refresher, and close the source's client if it has one."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1)
        close_source = getattr(self.source, "close", None)  # Secrets Manager's connections
        if close_source is not None:
            close_source()

    def __repr__(self) -> str:
        return f"<RefreshAheadCache {self.source.name} background={self.background}>"


def _again(exc: SecureDBError) -> SecureDBError:
    """A new exception like `exc`: same class, message and endpoint; no traceback or cause."""
    return type(exc)(str(exc), host=exc.host, port=exc.port)


def _refresher(ref: weakref.ref[RefreshAheadCache], wake: threading.Event) -> None:
    """Background refresher: sleep until the refresh is due, refresh, repeat.

    It holds the cache only weakly, so a cache nobody uses any more (its engine was
    dropped) is collected, and the thread ends within a minute.
    """
    while (cache := ref()) is not None and not cache._closed:
        delay = cache._due_in()
        if delay <= 0:
            with contextlib.suppress(Exception):  # logged in _failed; retried after backoff
                cache._refresh(wait=True)
            continue
        del cache
        wake.wait(min(delay, IDLE_CHECK))
        wake.clear()
