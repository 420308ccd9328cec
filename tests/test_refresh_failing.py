"""Background refresh that keeps failing, until the token it could not replace expires.

An IAM token for the bed's PostgreSQL, in a cache that refreshes on its own thread. The
AWS credentials go away after the first signing, so every refresh fails. The cache runs on
a clock the test moves: the real token stays valid at the database all along, so what is
tested is securedb's own decision to serve a token or not.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bed.bed import Bed
from securedb import errors
from securedb.config import Config
from securedb.connector import Connector
from securedb.credentials.base import Credential

pytestmark = pytest.mark.bed

TTL = 60  # iam_token_ttl; securedb serves a token a little less, refreshed after 2/3
WAIT = 15.0  # for the refresher thread to act (it runs as soon as it is woken)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Watched:
    """The real token source, each attempt counted and announced to the test."""

    def __init__(self, source: Any) -> None:
        self.source, self.name, self.kind = source, source.name, source.kind
        self.attempts, self.failures, self.threads = 0, 0, set[str]()
        self.signed: list[float] = []  # each new token's expiry on the test's clock
        self.changed = threading.Condition()

    def fetch(self, rejected: Credential | None = None) -> Credential:
        try:
            cred = self.source.fetch(rejected)
            self.signed.append(cred.expires_at)
            return cred
        except Exception:
            with self.changed:
                self.failures += 1
            raise
        finally:
            with self.changed:
                self.attempts += 1
                self.threads.add(threading.current_thread().name)
                self.changed.notify_all()

    def wait_for_failures(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.failures >= count, WAIT), (
                f"the refresher made {self.failures} failed attempts, not {count}"
            )


@pytest.fixture
def connector(bed: Bed, aws_env: dict[str, str]) -> Iterator[Connector]:
    cfg = Config.from_url(
        f"postgresql://iam_user@localhost:{bed.primary.port}/app",
        auth="iam",
        ca_bundle=str(bed.pki.ca),
        iam_token_ttl=TTL,
        refresh="background",
    )
    made = Connector(cfg)
    yield made
    made.close()


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr("securedb.credentials.aws._session", None)


def current_user(connector: Connector) -> tuple[str, str]:
    with connector.connect() as conn:
        row = conn.execute("SELECT current_user").fetchone()
        return str(row[0]), str(conn.info.password)  # type: ignore[index]


def test_failing_background_refresh_serves_the_token_until_it_expires(
    connector: Connector, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache = connector.cache
    watched = Watched(cache.source)
    cache.source, cache._clock, watched.source._clock = watched, clock, clock
    user, token = current_user(connector)
    assert user == "iam_user"
    refresh_at, expires_at = cache._value.refresh_at, cache._value.expires_at  # type: ignore[union-attr]
    assert clock.now < refresh_at < expires_at
    life = expires_at - clock.now
    no_aws_credentials(monkeypatch)

    # Due for a refresh: the caller gets the valid token at once; the thread tries.
    clock.now = refresh_at + 1
    assert current_user(connector) == ("iam_user", token)
    watched.wait_for_failures(1)
    assert watched.threads == {"MainThread", f"securedb-refresh {watched.name}"}

    # It fails again after its backoff; still the same token, which still logs in.
    clock.now += 5  # past the first backoff (at most BACKOFF_INITIAL), short of expiry
    assert clock.now < expires_at
    cache._wake.set()  # (get() wakes it too; the test moves the clock, so it says so)
    watched.wait_for_failures(2)
    assert current_user(connector) == ("iam_user", token)

    # Expired: never served, however the refresh is going.
    clock.now = expires_at
    with pytest.raises(errors.CredentialsError, match="no AWS credentials"):
        connector.connect().close()

    # The credentials come back: a caller after the backoff gets a new token. (It may
    # join a refresh the thread began just before, and get that one's failure: single
    # flight. The next backoff later it signs anew; a third time would be a bug.)
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    for _ in range(2):
        clock.now += 60
        with contextlib.suppress(errors.CredentialsError):
            user, fresh = current_user(connector)
            break
    else:
        pytest.fail("no new token after the AWS credentials came back")
    assert user == "iam_user"
    # A new signing, for a new life (the token's text may be the same: signed within
    # the same second of real time, with the same keys).
    assert watched.signed == [expires_at, clock.now + life]
    assert cache.get().expires_at == clock.now + life
    assert fresh == cache.get().password
