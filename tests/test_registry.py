"""One credential cache and at most one refresher thread per credential identity.

`connect`, `engine` and `pool` share caches through one registry keyed by identity;
dispose() and close() release theirs, and the last release stops the refresher.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

import psycopg
import pytest

import securedb
from bed import certs, postgres
from bed.bed import Bed
from securedb import _state, connector
from securedb.config import Config
from securedb.credentials import identity

pytestmark = pytest.mark.bed


def caches_of(key: Hashable) -> int:
    return int(key in _state.registry.entries)


def refreshers(started_since: set[threading.Thread], cfg: Config) -> list[threading.Thread]:
    """The live refresher threads for `cfg`'s user and endpoint started since the snapshot."""
    name = f"{cfg.user}@{cfg.host}:{cfg.port}"
    return [
        t
        for t in set(threading.enumerate()) - started_since
        if t.name.startswith("securedb-refresh") and name in t.name and t.is_alive()
    ]


def test_connect_shares_one_cache_per_identity(bed: Bed, aws_env: dict[str, str]) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    url = f"postgresql://{postgres.IAM_USER}@{certs.PG_INSTANCE}:5432/app"
    options = {"auth": "iam", "ca_bundle": str(bed.pki.ca), "tunnel": f"127.0.0.1:{fwd.port}"}
    before = set(threading.enumerate())
    key = identity(Config.from_url(url, **options))

    fwd.refuse()  # 1,000 connects that each get a credential and fail fast at TCP
    for _ in range(1000):
        with pytest.raises(psycopg.OperationalError):
            securedb.connect(Config.from_url(url, **options))
    fwd.accept()
    for n in range(100):  # real logins, each with its own driver options
        with securedb.connect(url, **options, connect_args={"application_name": f"a{n}"}) as conn:
            assert conn.info.parameter_status("application_name") == f"a{n}"
    cfg = Config.from_url(url, **options)
    for _ in range(50):
        eng = securedb.engine(cfg, pool_size=1)
        with eng.connect():
            pass
        eng.dispose()

    assert caches_of(key) == 1
    assert len(refreshers(before, cfg)) == 1
    _state.reset()
    assert caches_of(key) == 0


def test_last_release_stops_the_refresher(bed: Bed, aws_env: dict[str, str]) -> None:
    url = f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"
    cfg = Config.from_url(url, auth="iam", ca_bundle=str(bed.pki.ca))
    before = set(threading.enumerate())
    engines = [securedb.engine(cfg, pool_size=1) for _ in range(50)]
    pools = [securedb.pool(cfg, min_size=0, open=False) for _ in range(5)]
    for eng in engines:
        with eng.connect():
            pass
    with pools[0] as pool, pool.connection():
        pass
    [thread] = refreshers(before, cfg)
    assert caches_of(identity(cfg)) == 1
    for eng in engines:
        eng.dispose()
    assert thread.is_alive()  # the pools still hold the cache
    for pool in pools[1:]:
        pool.close()
    thread.join(5)
    assert not thread.is_alive()
    assert caches_of(identity(cfg)) == 0


def test_an_engine_used_after_dispose_takes_the_cache_back(
    bed: Bed, aws_env: dict[str, str]
) -> None:
    url = f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"
    eng = securedb.engine(url, auth="iam", ca_bundle=str(bed.pki.ca))
    key = identity(Config.from_url(url, auth="iam", ca_bundle=str(bed.pki.ca)))
    with eng.connect():
        pass
    eng.dispose()
    assert caches_of(key) == 0
    with eng.connect():
        pass
    assert caches_of(key) == 1
    eng.dispose()


def test_an_engine_disposed_while_connecting_connects_on_a_new_connector(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dispose() closes the engine's connector; a connection already on its way with that
    connector is made again on a new one instead of failing with ClosedError."""
    url = f"postgresql://app_user:{postgres.APP_PASSWORD}@localhost:{bed.primary.port}/app"
    before = set(_state._tracked)
    eng = securedb.engine(url, ca_bundle=str(bed.pki.ca), pool_size=1)
    [owner] = [o for o in set(_state._tracked) - before if type(o).__name__ == "_EngineConnector"]
    stale = owner.get()
    eng.dispose()  # between the connection's get() and its use
    handed = [stale]
    original = owner.get
    monkeypatch.setattr(owner, "get", lambda: handed.pop() if handed else original())
    with eng.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    assert stale.closed
    assert owner.get() is not stale
    eng.dispose()


def test_identities_differ_by_credential_not_by_connection() -> None:
    rds = "mydb.abc123.eu-west-2.rds.amazonaws.com"
    base = Config.from_url(f"postgresql://app@{rds}/app", auth="iam")
    same = [
        Config.from_url(f"postgresql://app@{rds}/other?application_name=x", auth="iam"),
        Config.from_url(f"postgresql://app@{rds.upper()}/app", auth="iam", tunnel="[::1]:5433"),
        Config.from_url(f"postgresql://app@{rds}/app", auth="iam", connect_timeout=9),
    ]
    different = [
        Config.from_url(f"postgresql://admin@{rds}/app", auth="iam"),
        Config.from_url(f"postgresql://app@{rds}:5433/app", auth="iam"),
        Config.from_url(f"postgresql://app@{rds}/app", auth="iam", iam_token_ttl=600),
        Config.from_url(f"postgresql://app@{rds}/app", auth="iam", refresh="lazy"),
    ]
    assert all(identity(c) == identity(base) for c in same)
    assert all(identity(c) != identity(base) for c in different)
    # A host that names no region: region= is part of the identity.
    plain = "postgresql://app@db.example.com/app"
    assert identity(Config.from_url(plain, auth="iam", region="eu-west-1")) != identity(
        Config.from_url(plain, auth="iam", region="eu-west-2")
    )
    one = Config.from_url("postgresql://app:one@localhost/app")
    assert identity(one) != identity(Config.from_url("postgresql://app:two@localhost/app"))


def test_a_handle_from_before_a_reset_releases_nothing_of_the_new_entry() -> None:
    """A connector that outlived `reset()` (an old engine, a stored traceback) is let go
    later: it must not take a reference that a new connector holds."""
    cfg = Config.from_url("postgresql://app:pw@localhost/app")
    old = connector.Connector(cfg)
    _state.reset()
    new = connector.Connector(cfg)
    old.close()
    assert _state.registry.entries[identity(cfg)][1] == 1
    new.close()
    assert identity(cfg) not in _state.registry.entries


def test_a_release_never_waits_for_the_registry_lock() -> None:
    """The garbage collector can finalize a connector inside `acquire`, on the thread that
    holds the registry lock (a CI run hung so): a release is queued, not waited for, and
    the next holder applies it when it lets go."""
    cfg = Config.from_url("postgresql://app:pw@localhost/app")
    first, second = connector.Connector(cfg), connector.Connector(cfg)
    released = threading.Event()

    def release_first() -> None:
        first.close()
        released.set()

    with _state.registry.lock:  # as acquire() holds it when the collector runs
        threading.Thread(target=release_first).start()
        assert released.wait(5), "release() waited for the registry lock"
        assert _state.registry.entries[identity(cfg)][1] == 2  # queued
    other = connector.Connector(Config.from_url("postgresql://app:other@localhost/app"))
    assert _state.registry.entries[identity(cfg)][1] == 1  # applied by acquire()
    second.close()
    other.close()
    assert identity(cfg) not in _state.registry.entries
