"""Rotation's decisions, exactly: which stage is read when, and when a refusal refetches.

`SecretSource` is given a stand-in Secrets Manager client at the botocore boundary (the
client object it would make); the cache a hand-driven clock. test_rotation.py shows the
same on the bed's moto and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import botocore.exceptions
import pytest

from securedb import errors
from securedb.credentials.base import Credential
from securedb.credentials.cache import MIN_FORCED_INTERVAL, RefreshAheadCache
from securedb.credentials.secrets import PENDING_TTL, SecretSource


class Client:
    """Secrets Manager's ``get_secret_value`` over a table of stages; counts the reads."""

    def __init__(self, stages: dict[str, tuple[str, dict[str, Any]] | str]) -> None:
        self.stages = stages
        self.reads: list[str] = []

    def get_secret_value(self, SecretId: str, VersionStage: str) -> dict[str, Any]:
        assert SecretId == "rds/app"
        self.reads.append(VersionStage)
        entry = self.stages.get(VersionStage, "ResourceNotFoundException")
        if isinstance(entry, str):
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": entry, "Message": "no"}}, "GetSecretValue"
            )
        version, fields = entry
        return {"VersionId": version, "SecretString": json.dumps(fields)}


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def source(stages: dict[str, Any], clock: Clock | None = None) -> tuple[SecretSource, Client]:
    made = SecretSource("rds/app", "eu-west-2", 600, clock or Clock(100.0))
    made._client = client = Client(stages)
    return made, client


CURRENT = ("v1", {"username": "app", "password": "first-pw", "host": "db.example"})
PENDING = ("v2", {"username": "app", "password": "second-pw", "host": "db.example"})


def test_fetch_reads_awscurrent_only_without_a_refusal() -> None:
    src, client = source({"AWSCURRENT": CURRENT, "AWSPENDING": PENDING})
    cred = src.fetch()
    assert (cred.user, cred.password, cred.version) == ("app", "first-pw", "v1")
    assert cred.fields == {"host": "db.example"}
    assert cred.refresh_at == 700.0
    assert client.reads == ["AWSCURRENT"]


def test_refused_current_falls_to_awspending_for_a_short_while() -> None:
    clock = Clock(100.0)
    src, client = source({"AWSCURRENT": CURRENT, "AWSPENDING": PENDING}, clock)
    refused = src.fetch()
    clock.now = 150.0
    cred = src.fetch(rejected=refused)
    assert (cred.user, cred.password, cred.version) == ("app", "second-pw", "v2")
    assert cred.fields == {"host": "db.example"}
    assert cred.refresh_at == 150.0 + PENDING_TTL == 180.0
    assert client.reads == ["AWSCURRENT", "AWSCURRENT", "AWSPENDING"]


def test_a_newer_current_is_taken_without_reading_pending() -> None:
    src, client = source({"AWSCURRENT": CURRENT, "AWSPENDING": PENDING})
    old = Credential("app", "zeroth-pw", version="v0")
    assert src.fetch(rejected=old).version == "v1"
    assert client.reads == ["AWSCURRENT"]


@pytest.mark.parametrize("pending", [None, CURRENT], ids=["no AWSPENDING", "AWSPENDING=refused"])
def test_no_other_pending_version_gives_current_again(pending: Any) -> None:
    stages: dict[str, Any] = {"AWSCURRENT": CURRENT}
    if pending is not None:
        stages["AWSPENDING"] = pending
    src, client = source(stages)
    refused = src.fetch()
    again = src.fetch(rejected=refused)
    assert (again.password, again.version) == ("first-pw", "v1")
    assert again.refresh_at == 700.0
    assert client.reads == ["AWSCURRENT", "AWSCURRENT", "AWSPENDING"]


def test_awscurrent_missing_is_an_error_naming_the_secret() -> None:
    src, _ = source({})
    with pytest.raises(errors.CredentialsError) as caught:
        src.fetch()
    assert str(caught.value) == (
        "secret 'rds/app' not read: AWS said ResourceNotFoundException; check the secret's "
        "name or ARN and the region"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_awspending_denied_says_rotation_needed_it() -> None:
    src, client = source({"AWSCURRENT": CURRENT, "AWSPENDING": "AccessDeniedException"})
    refused = src.fetch()
    with pytest.raises(errors.CredentialsError) as caught:
        src.fetch(rejected=refused)
    assert str(caught.value) == (
        "secret 'rds/app' not read at AWSPENDING, which rotation needs once the database "
        "has refused AWSCURRENT: AWS said AccessDeniedException; grant "
        "secretsmanager:GetSecretValue (and kms:Decrypt)"
    )
    assert client.reads == ["AWSCURRENT", "AWSCURRENT", "AWSPENDING"]


def test_other_failures_are_translated_without_their_text() -> None:
    class Broken:
        def get_secret_value(self, **_: Any) -> Any:
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="https://sm")

    src = SecretSource("rds/app", "eu-west-2", 600)
    src._client = Broken()
    with pytest.raises(errors.CredentialsError, match="secret 'rds/app' not read: cannot reach"):
        src.fetch()


def test_close_never_waits_for_the_client_lock() -> None:
    """A finalizer can close the source while the same thread creates its client."""
    src = SecretSource("rds/app", "eu-west-2", 600)
    closed = threading.Event()

    def close() -> None:
        src.close()
        closed.set()

    with src._client_lock:  # as _get_client() holds it
        threading.Thread(target=close).start()
        assert closed.wait(5), "close() waited for the client lock"


# --- cache.invalidate --------------------------------------------------------------------


class Versions:
    """A source handing out v1, v2, ... and recording what it was told was refused."""

    name = "versions"

    def __init__(self) -> None:
        self.count = 0
        self.rejected: list[Credential | None] = []

    def fetch(self, rejected: Credential | None = None) -> Credential:
        self.count += 1
        self.rejected.append(rejected)
        return Credential("app", f"pw{self.count}", version=f"v{self.count}")


def cache_at(now: float) -> tuple[RefreshAheadCache, Versions, Clock]:
    clock, versions = Clock(now), Versions()
    return RefreshAheadCache(versions, "lazy", clock), versions, clock


def test_invalidate_refetches_once_and_tells_the_source() -> None:
    cache, versions, _ = cache_at(0.0)  # a refusal at clock 0 is not "within a second"
    first = cache.get()
    cache.invalidate(first)
    second = cache.get()
    assert second.version == "v2"
    assert versions.rejected == [None, first]
    assert cache.get() is second
    cache.invalidate(second)  # ... but the next within the second is not
    assert cache.get() is second
    assert versions.count == 2


def test_invalidate_is_rate_limited_to_one_a_second() -> None:
    cache, versions, clock = cache_at(10.0)
    cache.invalidate(cache.get())
    second = cache.get()
    clock.now = 10.0 + MIN_FORCED_INTERVAL - 0.001
    cache.invalidate(second)
    assert cache.get() is second
    clock.now = 10.0 + MIN_FORCED_INTERVAL
    cache.invalidate(second)
    assert cache.get().version == "v3"
    assert versions.rejected == [None, versions.rejected[1], second]


def test_invalidate_of_a_replaced_value_does_nothing() -> None:
    cache, versions, _ = cache_at(10.0)
    first = cache.get()
    cache.invalidate(first)
    cache.get()
    cache.invalidate(first)  # refused by an older connection: already replaced
    assert cache.get().version == "v2"
    assert versions.count == 2


def test_a_refusal_is_worth_a_fetch_within_a_backoff() -> None:
    """A failed refresh-ahead starts a backoff; the database's refusal still gets a fetch."""
    clock, failing = Clock(0.0), {"on": False}

    class Ahead(Versions):
        def fetch(self, rejected: Credential | None = None) -> Credential:
            if failing["on"]:
                raise errors.CredentialsError("down")
            made = super().fetch(rejected)
            return Credential(made.user, made.password, clock() + 0.1, clock() + 100, made.version)

    ahead = Ahead()
    cache = RefreshAheadCache(ahead, "lazy", clock)
    first = cache.get()
    failing["on"], clock.now = True, 0.2
    assert cache.get() is first  # the refresh ahead failed: a backoff of 0.25 s or more
    failing["on"] = False
    cache.invalidate(first)
    assert cache.get().version == "v2"
    assert ahead.rejected == [None, first]


def test_invalidate_logs_the_source_by_name(caplog: pytest.LogCaptureFixture) -> None:
    cache, _, _ = cache_at(10.0)
    with caplog.at_level(logging.INFO, "securedb.credentials"):
        cache.invalidate(cache.get())
    assert [r.getMessage() for r in caplog.records] == [
        "versions was refused by the database; fetching it again"
    ]
