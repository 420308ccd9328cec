"""RDS Proxy (the bed's PgBouncer) and the Lambda pattern."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

import securedb
from bed import certs, postgres
from bed.bed import Bed
from securedb import tls
from securedb.config import Config
from securedb.contrib import aws_lambda
from securedb.credentials.base import Credential
from securedb.drivers import postgres as pg_driver

pytestmark = pytest.mark.bed


def proxy_url(bed: Bed, auth: str) -> tuple[str, dict[str, Any]]:
    """The proxy endpoint by name, reached through a tunnel to the bed's PgBouncer."""
    if auth == "iam":
        url = f"postgresql://iam_user@{certs.PROXY}:5432/app"
        port = bed.proxy_iam.port
    else:
        url = f"postgresql://app_user:{postgres.APP_PASSWORD}@{certs.PROXY}:5432/app"
        port = bed.proxy_password.port
    return url, {"auth": auth, "ca_bundle": str(bed.pki.ca), "tunnel": f"127.0.0.1:{port}"}


@pytest.mark.parametrize("asked", [{}, {"prepare_threshold": 5}])
def test_proxy_endpoints_get_proxy_safe_settings(asked: dict[str, Any]) -> None:
    """No server-side prepared statements through a proxy, whatever the caller asks;
    a direct endpoint keeps psycopg's default (prepare after 5 runs) or the caller's."""
    cred = Credential("u", "t")
    proxy = Config.from_url(f"postgresql://u@{certs.PROXY}/app", auth="iam")
    direct = Config.from_url(f"postgresql://u@{certs.PG_INSTANCE}/app", auth="iam")
    assert proxy.is_proxy
    assert not direct.is_proxy
    through_proxy = pg_driver.connect_kwargs(proxy, cred, asked)
    assert "prepare_threshold" in through_proxy
    assert through_proxy["prepare_threshold"] is None
    assert through_proxy["sslrootcert"] == str(tls.PROXY_BUNDLE)
    direct_kwargs = pg_driver.connect_kwargs(direct, cred, asked)
    assert direct_kwargs.get("prepare_threshold", "absent") == asked.get(
        "prepare_threshold", "absent"
    )
    assert direct_kwargs["sslrootcert"] == str(tls.RDS_BUNDLE)


def test_proxy_connections_never_prepare(bed: Bed, aws_env: dict[str, str]) -> None:
    """The setting reaches psycopg: through the proxy, a statement run again and again is
    never prepared; on a direct connection psycopg prepares it after five runs."""
    url, options = proxy_url(bed, "password")
    direct = f"postgresql://app_user:{postgres.APP_PASSWORD}@localhost:{bed.primary.port}/app"
    query = "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int%'"
    with securedb.connect(url, **options) as conn:
        assert conn.prepare_threshold is None
        for n in range(8):
            assert conn.execute("SELECT %s::int", (n,)).fetchone() == (n,)
        assert conn.execute(query).fetchone() == (0,)
    with securedb.connect(direct, ca_bundle=str(bed.pki.ca)) as conn:
        assert conn.prepare_threshold == 5
        for n in range(8):
            assert conn.execute("SELECT %s::int", (n,)).fetchone() == (n,)
        assert conn.execute(query).fetchone() == (1,)


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["iam", "password"])
def test_200_concurrent_invocations_through_the_proxy(
    bed: Bed, aws_env: dict[str, str], auth: str
) -> None:
    """200 short-lived connections at once, through a proxy with 5 server connections."""
    url, options = proxy_url(bed, auth)
    if auth == "iam":
        # The stand-in's limit, not RDS Proxy's: PgBouncer runs PAM on one thread and
        # collects its answers on a 1/3 s timer, so 200 IAM logins queue for seconds.
        options["connect_timeout"] = 60
    barrier = threading.Barrier(200)
    failures: list[str] = []
    done: list[int] = []

    def invocation() -> None:
        barrier.wait()
        try:
            with securedb.connect(url, **options) as conn:
                assert conn.prepare_threshold is None
                for _ in range(3):  # would fail on a transaction pooler if prepared
                    assert conn.execute("SELECT %s::int", (1,)).fetchone() == (1,)
            done.append(1)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=invocation) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(done) == 200


def backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar())


def test_lambda_cold_then_warm_invocations(bed: Bed, aws_env: dict[str, str]) -> None:
    """A cold invocation, 100 warm ones on one connection, no thread, a drop survived."""
    fwd = bed.forwarder(("127.0.0.1", bed.proxy_iam.port))
    url = f"postgresql://iam_user@{certs.PROXY}:5432/app"
    options = {"auth": "iam", "ca_bundle": str(bed.pki.ca), "tunnel": f"127.0.0.1:{fwd.port}"}
    threads_before = set(threading.enumerate())

    def handler(event: int) -> int:
        engine = aws_lambda.cached_engine(url, **options)
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT :n"), {"n": event}).scalar())

    assert handler(0) == 0  # cold
    engine = aws_lambda.cached_engine(url, **options)
    assert engine.pool.size() == 1
    for event in range(1, 101):  # warm
        assert handler(event) == event
    assert fwd.accepted == 1  # one client connection for 101 invocations
    started = set(threading.enumerate()) - threads_before
    assert not [t for t in started if t.name.startswith("securedb")]  # lazy refresh: none

    fwd.drop()  # the proxy closed the idle connection while the environment was frozen
    assert handler(101) == 101
    assert fwd.accepted == 2
    engine.dispose()
