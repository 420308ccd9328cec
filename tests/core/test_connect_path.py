"""The connect path's decisions with a stand-in driver: refresh once on refusal, then stop.

The driver adapter is replaced by one whose ``connect`` refuses or fails on cue and
whose ``classify`` says what each error is; the credential source hands out numbered
versions. test_connect.py and test_rotation.py show the same on the bed's servers.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from securedb import _state, connector, errors
from securedb.config import Config
from securedb.connector import Connector
from securedb.credentials.base import Credential
from securedb.drivers import Failure

RDS = "mydb.abc123.eu-west-2.rds.amazonaws.com"


class Refused(Exception):
    """What the stand-in driver raises; its class says how it classifies."""

    failure: Failure | None = None


KINDS = {
    kind: type(f"Refused{kind.name if kind else ''}", (Refused,), {"failure": kind})
    for kind in (*Failure, None)
}


def refused(failure: Failure | None, text: str) -> Refused:
    return KINDS[failure](text)


class Driver:
    ASYNC_IMPORTS = ("json",)  # a module that is always there: nothing to import off the loop

    def __init__(self, outcomes: list[Refused | str]) -> None:
        self.outcomes = outcomes
        self.passwords: list[str] = []

    def check_args(self, args: Any, host: str | None) -> None:
        """The real adapters' checks are tested in test_tls_arguments.py."""

    def connect(self, cfg: Config, cred: Credential, args: Any) -> str:
        self.passwords.append(cred.password)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Refused):
            raise outcome
        return outcome

    async def connect_async(self, cfg: Config, cred: Credential, args: Any) -> str:
        return self.connect(cfg, cred, args)

    def classify(self, exc: BaseException) -> Failure | None:
        return exc.failure if isinstance(exc, Refused) else None


class Versions:
    name = "test credential"

    def __init__(self) -> None:
        self.count = 0
        self.rejected: list[Credential | None] = []

    def fetch(self, rejected: Credential | None = None) -> Credential:
        self.count += 1
        self.rejected.append(rejected)
        return Credential("app", f"secret-pw-{self.count}", version=f"v{self.count}")


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def make(url: str, outcomes: list[Refused | str], **options: Any) -> Any:
        driver = Driver(outcomes)
        monkeypatch.setattr(connector.drivers, "load", lambda engine, name=None: driver)
        conn = Connector(Config.from_url(url, refresh="lazy", **options))
        versions = Versions()
        if conn.config.auth != "password":
            conn.cache.source = versions
        made.append(conn)
        return conn, driver, versions

    made: list[Connector] = []
    yield make
    for conn in made:
        conn.close()


def test_a_refusal_refreshes_once_and_retries(setup: Any) -> None:
    conn, driver, versions = setup(
        f"postgresql://app@{RDS}/app", [refused(Failure.AUTH, "rotated"), "connection"], auth="iam"
    )
    assert conn.connect() == "connection"
    assert driver.passwords == ["secret-pw-1", "secret-pw-2"]
    assert [r.version if r else None for r in versions.rejected] == [None, "v1"]


def test_a_second_refusal_is_an_authentication_error(setup: Any) -> None:
    conn, driver, versions = setup(
        f"mysql://app@{RDS}/app",
        [refused(Failure.AUTH, "no secret-pw-1"), refused(Failure.AUTH, "no secret-pw-2")],
        secret_id="rds/app",
    )
    with pytest.raises(errors.AuthenticationError) as caught:
        conn.connect()
    assert str(caught.value).startswith(
        f"app@{RDS}:3306 refused the secret's password even after fetching it again "
        "(the server said: no ***); check"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert driver.passwords == ["secret-pw-1", "secret-pw-2"]
    assert versions.count == 2
    assert "secret-pw" not in "".join(traceback.format_exception(caught.value))


def test_a_static_password_is_not_retried(setup: Any) -> None:
    conn, driver, _ = setup(
        "postgresql://app:pw-static-9@localhost:5433/app", [refused(Failure.AUTH, "bad")]
    )
    with pytest.raises(errors.AuthenticationError, match=r"refused the password \(the server"):
        conn.connect()
    assert driver.passwords == ["pw-static-9"]


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Failure.TLS, errors.TLSError),
        (Failure.FAILOVER, KINDS[Failure.FAILOVER]),
        (None, KINDS[None]),
    ],
)
def test_other_failures_are_not_retried(
    setup: Any, failure: Failure | None, error: type[Exception]
) -> None:
    conn, driver, versions = setup(
        f"postgresql://app@{RDS}/app", [refused(failure, "certificate verify failed")], auth="iam"
    )
    with pytest.raises(error) as caught:
        conn.connect()
    assert caught.value.__context__ is None
    assert driver.passwords == ["secret-pw-1"]
    assert versions.count == 1


def test_a_refusal_within_a_second_of_the_last_is_not_retried(setup: Any) -> None:
    """The refetch is rate-limited; a retry with the credential just refused would only be
    refused again, so the second refusal is the caller's error at once."""
    conn, driver, versions = setup(
        f"postgresql://app@{RDS}/app",
        [refused(Failure.AUTH, "x"), "first", refused(Failure.AUTH, "y"), "unused"],
        auth="iam",
    )
    assert conn.connect() == "first"
    with pytest.raises(errors.AuthenticationError, match=r"\(the server said: y\)"):
        conn.connect()
    assert driver.passwords == ["secret-pw-1", "secret-pw-2", "secret-pw-2"]
    assert versions.count == 2


def test_credential_failures_leave_clean(setup: Any) -> None:
    conn, driver, versions = setup(f"postgresql://app@{RDS}/app", [], auth="iam")

    def broken(rejected: Credential | None = None) -> Credential:
        raise errors.CredentialsError("IAM token not signed: no AWS credentials")

    versions.fetch = broken
    with pytest.raises(errors.CredentialsError) as caught:
        conn.connect()
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
    assert driver.passwords == []


def test_dbname_of_one_connection(setup: Any) -> None:
    seen: list[str | None] = []
    conn, driver, _ = setup(f"postgresql://app@{RDS}/app", ["a", "b", "c"], auth="iam")
    original = driver.connect

    def connect(cfg: Config, cred: Credential, args: Any) -> str:
        seen.append(cfg.dbname)
        return original(cfg, cred, args)

    driver.connect = connect
    conn.connect()
    conn.connect("reports")
    conn.connect("app")
    assert seen == ["app", "reports", "app"]


def test_a_refusal_is_logged_by_version_not_value(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    conn, _, _ = setup(
        f"postgresql://app@{RDS}/app", [refused(Failure.AUTH, "rotated"), "ok"], auth="iam"
    )
    with caplog.at_level(logging.INFO, "securedb.connect"):
        conn.connect()
    assert [r.getMessage() for r in caplog.records if r.name == "securedb.connect"] == [
        f"app@{RDS}:5432 refused test credential (version v1); refreshing once"
    ]


def test_the_connections_own_arguments_go_to_both_attempts(setup: Any) -> None:
    conn, driver, _ = setup(
        f"postgresql://app@{RDS}/app", [refused(Failure.AUTH, "rotated"), "ok"], auth="iam"
    )
    seen: list[Any] = []
    original = driver.connect

    def connect(cfg: Config, cred: Credential, args: Any) -> str:
        seen.append(dict(args))
        return original(cfg, cred, args)

    driver.connect = connect
    conn.connect(application_name="web")
    assert seen == [{"application_name": "web"}, {"application_name": "web"}]


def test_a_secret_that_names_the_endpoint_and_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = Connector(Config.from_url(secret_id="rds/app", refresh="lazy"))
    try:

        class Down:
            name = "secret 'rds/app'"

            def fetch(self, rejected: Credential | None = None) -> Credential:
                raise errors.CredentialsError("secret 'rds/app' not read: AWS said Throttling")

        conn.cache.source = Down()
        with pytest.raises(errors.CredentialsError, match="AWS said Throttling") as caught:
            conn.connect()
        assert caught.value.__context__ is None
        assert caught.value.__cause__ is None
    finally:
        conn.close()


def test_an_rds_managed_secret_names_the_endpoint_and_the_user() -> None:
    conn = Connector(Config.from_url(secret_id="rds/app", refresh="lazy"))
    try:

        class Managed:
            name = "secret 'rds/app'"

            def fetch(self, rejected: Credential | None = None) -> Credential:
                fields = {"engine": "postgres", "host": RDS, "port": 5433, "dbname": "app"}
                return Credential("app_user", "pw-managed-1", version="v1", fields=fields)

        conn.cache.source = Managed()
        cfg = conn.config
        assert (cfg.engine, cfg.host, cfg.port, cfg.dbname, cfg.user) == (
            "postgresql",
            RDS,
            5433,
            "app",
            "app_user",
        )
        assert conn.config is cfg
    finally:
        conn.close()


def test_a_secret_with_a_host_and_no_engine_is_resolved_from_the_secret() -> None:
    conn = Connector(Config(auth="secret", secret_id="rds/app", host=RDS, refresh="lazy"))
    try:

        class Managed:
            name = "secret 'rds/app'"

            def fetch(self, rejected: Credential | None = None) -> Credential:
                return Credential("app", "pw-m", version="v1", fields={"engine": "mysql"})

        conn.cache.source = Managed()
        assert (conn.config.engine, conn.config.host, conn.config.port) == ("mysql", RDS, 3306)
    finally:
        conn.close()


def test_connect_keeps_one_connector_per_url_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """`securedb.connect` memoises by its arguments: other arguments, another connector."""
    seen: list[tuple[str | None, int | None, str | None]] = []

    class Recording(Driver):
        def connect(self, cfg: Config, cred: Credential, args: Any) -> str:
            seen.append((cfg.host, cfg.port, cfg.region))
            return "conn"

    monkeypatch.setattr(connector.drivers, "load", lambda engine, name=None: Recording([]))
    connector.connect("postgresql://app:pw@localhost:5433/app")
    connector.connect("postgresql://app:pw@127.0.0.1:5434/app")
    connector.connect("postgresql://app:pw@127.0.0.1:5434/app", region="eu-west-1")
    connector.connect("postgresql://app:pw@127.0.0.1:5434/app", region="eu-west-3")
    assert seen == [
        ("localhost", 5433, None),
        ("127.0.0.1", 5434, None),
        ("127.0.0.1", 5434, "eu-west-1"),
        ("127.0.0.1", 5434, "eu-west-3"),
    ]


def test_connectors_of_one_identity_share_a_cache_until_the_last_closes() -> None:
    cfg = Config.from_url("postgresql://app:pw-1@localhost:5433/app")
    key = connector.identity(cfg)
    first, second = Connector(cfg), Connector(cfg)
    shared = first.cache
    assert second.cache is shared
    assert _state.registry.entries[key][1] == 2
    first.close()
    first.close()  # a second close releases nothing more
    assert _state.registry.entries[key][1] == 1
    second.close()
    assert key not in _state.registry.entries
    assert shared._closed
    third = Connector(cfg)
    assert third.cache is not shared
    third.close()


def test_close_is_final_and_a_with_block_closes() -> None:
    cfg = Config.from_url("postgresql://app:pw-1@localhost:5433/app")
    key = connector.identity(cfg)
    with Connector(cfg) as used:
        assert _state.registry.entries[key][1] == 1
        assert not used.closed
    assert used.closed
    assert key not in _state.registry.entries
    message = "<Connector app@localhost:5433 auth=password> is closed: make a new engine, pool or"
    for use in (lambda: used.cache, used.connect):
        with pytest.raises(errors.ClosedError, match=message) as caught:
            use()
        assert (caught.value.host, caught.value.port) == ("localhost", 5433)
    with pytest.raises(errors.ClosedError, match=message):
        asyncio.run(used.connect_async())
    assert key not in _state.registry.entries  # nothing was taken back


def test_a_connector_collected_unclosed_is_released_with_a_warning() -> None:
    cfg = Config.from_url("postgresql://app:pw-1@localhost:5433/app")
    key = connector.identity(cfg)
    said = (
        r"^<Connector app@localhost:5433 auth=password> was never closed: dispose\(\) its "
        r"engine, close\(\) its pool, or use the connector in a `with` block$"
    )
    with pytest.warns(ResourceWarning, match=said):
        Connector(cfg)  # dropped at once: nothing holds a connector in a cycle
    assert key not in _state.registry.entries
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Connector(cfg, owned=True)  # an engine's or a pool's: they may be dropped
    assert key not in _state.registry.entries


def test_connect_refuses_unknown_options_by_name() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        connector.connect("postgresql://app:pw@localhost/app", colour="red", bogus=1)
    assert str(caught.value) == (
        "unknown option bogus, colour; pass driver arguments in connect_args="
    )


def test_connect_keeps_the_64_most_recent_connectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connector.drivers, "load", lambda engine, name=None: Driver(["c"] * 70))
    memo = _state.memo
    urls = [f"postgresql://app:pw@localhost:{6000 + n}/app" for n in range(66)]
    for url in urls[:64]:
        connector.connect(url)
    first = memo.entries[(urls[0], "[]")]
    connector.connect(urls[0])  # used again: now the most recent
    connector.connect(urls[64])
    assert len(memo.entries) == 64
    assert (urls[1], "[]") not in memo.entries  # the least recently used went
    assert memo.entries[(urls[0], "[]")] is first
    assert list(memo.entries)[-1] == (urls[64], "[]")
    connector.connect(urls[65])
    assert (urls[2], "[]") not in memo.entries


def test_the_async_path_makes_the_same_decisions(setup: Any) -> None:
    import asyncio

    seen: list[str | None] = []
    conn, driver, versions = setup(
        f"postgresql://app@{RDS}/app", [refused(Failure.AUTH, "rotated"), "a", "b"], auth="iam"
    )
    original = driver.connect

    def connect(cfg: Config, cred: Credential, args: Any) -> str:
        seen.append(cfg.dbname)
        return original(cfg, cred, args)

    driver.connect = connect
    assert asyncio.run(conn.connect_async()) == "a"
    assert asyncio.run(conn.connect_async("reports")) == "b"
    assert seen == ["app", "app", "reports"]
    assert driver.passwords == ["secret-pw-1", "secret-pw-2", "secret-pw-2"]
    assert versions.count == 2


def test_async_connect_resolves_an_rds_managed_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    seen: list[Config] = []

    class Recording(Driver):
        def connect(self, cfg: Config, cred: Credential, args: Any) -> str:
            seen.append(cfg)
            return "conn"

    class Managed:
        name = "secret 'rds/app'"

        def fetch(self, rejected: Credential | None = None) -> Credential:
            fields = {"engine": "postgres", "host": RDS, "dbname": "app"}
            return Credential("app_user", "pw-managed-1", version="v1", fields=fields)

    conn = Connector(Config.from_url(secret_id="rds/app", refresh="lazy"))
    try:
        conn.cache.source = Managed()
        monkeypatch.setattr(connector.drivers, "load", lambda engine, name=None: Recording([]))
        assert asyncio.run(conn.connect_async()) == "conn"
    finally:
        conn.close()
    assert (seen[0].host, seen[0].user, seen[0].dbname) == (RDS, "app_user", "app")


def test_async_connect_keeps_one_connector_per_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    seen: list[str | None] = []

    class Recording(Driver):
        def connect(self, cfg: Config, cred: Credential, args: Any) -> str:
            seen.append(cfg.region)
            return "conn"

    monkeypatch.setattr(connector.drivers, "load", lambda engine, name=None: Recording([]))
    url = "postgresql://app:pw@localhost:5433/app"
    asyncio.run(connector.async_connect(url, region="eu-west-1"))
    asyncio.run(connector.async_connect(url, region="eu-west-3"))
    assert seen == ["eu-west-1", "eu-west-3"]


def test_async_refusals_credential_failures_and_arguments(setup: Any) -> None:
    import asyncio

    conn, driver, _ = setup(
        f"postgresql://app@{RDS}/app",
        [refused(Failure.AUTH, "a"), refused(Failure.AUTH, "b")],
        auth="iam",
    )
    seen: list[Any] = []
    original = driver.connect

    def connect(cfg: Config, cred: Credential, args: Any) -> str:
        seen.append(dict(args))
        return original(cfg, cred, args)

    driver.connect = connect
    with pytest.raises(errors.AuthenticationError, match=r"\(the server said: b\)") as caught:
        asyncio.run(conn.connect_async(application_name="web"))
    assert caught.value.__context__ is None
    assert seen == [{"application_name": "web"}, {"application_name": "web"}]


def test_async_credential_failures_leave_clean(setup: Any) -> None:
    import asyncio

    conn, driver, versions = setup(f"postgresql://app@{RDS}/app", [], auth="iam")

    def broken(rejected: Credential | None = None) -> Credential:
        raise errors.CredentialsError("IAM token not signed: no AWS credentials")

    versions.fetch = broken
    with pytest.raises(errors.CredentialsError) as caught:
        asyncio.run(conn.connect_async())
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
    assert driver.passwords == []


def test_async_secret_that_cannot_be_read_leaves_clean() -> None:
    import asyncio

    class Down:
        name = "secret 'rds/app'"

        def fetch(self, rejected: Credential | None = None) -> Credential:
            raise errors.CredentialsError("secret 'rds/app' not read: AWS said Throttling")

    conn = Connector(Config.from_url(secret_id="rds/app", refresh="lazy"))
    try:
        conn.cache.source = Down()
        with pytest.raises(errors.CredentialsError, match="Throttling") as caught:
            asyncio.run(conn.connect_async())
        assert caught.value.__context__ is None
    finally:
        conn.close()


def test_a_cached_credential_is_used_inline(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    conn, _, _ = setup(f"postgresql://app@{RDS}/app", [], auth="iam")
    cached = conn.cache.get()
    calls: list[Any] = []

    async def to_thread(fn: Any, *args: Any) -> Any:
        calls.append(fn)
        return fn(*args)

    monkeypatch.setattr(connector.asyncio, "to_thread", to_thread)
    assert asyncio.run(conn.credential_async()) is cached
    assert calls == []


def test_waiting_tasks_share_one_fetch_thread() -> None:
    """Tasks that find no credential await one fetch in one thread between them.

    Each used to wait in a thread of its own, and the loop's default executor keeps every
    thread it starts: the fleet soak (benchmarks/soak) saw uvicorn workers' threads creep
    up to the executor's size after bursts of new connections (a rotation's refusals).
    """
    import asyncio
    import threading

    release = threading.Event()
    fetched: list[int] = []

    class Slow:
        name = "secret 'rds/slow'"

        def fetch(self, rejected: Credential | None = None) -> Credential:
            fetched.append(threading.get_ident())
            release.wait(5)
            return Credential("app", "rotated", version="v2")

    conn = Connector(Config.from_url(secret_id="rds/slow", refresh="lazy"))
    try:
        conn.cache.source = Slow()
        getters: list[int] = []
        original = conn.cache.get

        def get() -> Credential:
            getters.append(threading.get_ident())
            return original()

        conn.cache.get = get  # type: ignore[method-assign]

        async def main() -> list[Credential]:
            waiting = [asyncio.create_task(conn.credential_async()) for _ in range(20)]
            await asyncio.sleep(0)  # one turn of the loop: every task has started and waits
            release.set()
            return await asyncio.gather(*waiting)

        values = asyncio.run(main())
    finally:
        conn.close()
    assert {v.version for v in values} == {"v2"}
    assert len(fetched) == 1
    assert len(getters) == 1  # one thread waited, not twenty
