"""asyncpg on the bed: the guarantees psycopg has, through asyncpg's own connection.

verify-full against the bed's CA, the RDS name through a tunnel (asyncpg has no
``hostaddr``: securedb's SSLContext names the endpoint in every handshake), refusals
before any credential is sent, IAM tokens across their lifetimes, SQLAlchemy's asyncpg
dialect, the URL spellings, the merge point, and dead-peer detection on the socket.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import sqlalchemy as sa

import securedb
from bed import certs, postgres
from bed.bed import Bed
from securedb import errors
from securedb.config import Config
from securedb.connector import Connector
from securedb.drivers import Failure
from securedb.drivers import asyncpg as adapter
from tests import fakes

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.bed


def iam_url(bed: Bed) -> str:
    return f"postgresql+asyncpg://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"


async def facts(conn: Any) -> tuple[str, bool]:
    """The user and whether TLS is on, from the server's side."""
    row = await conn.fetchrow(
        "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    )
    return row[0], row[1]


def connect_and(bed: Bed, url: str, **options: Any) -> tuple[str, bool]:
    async def main() -> tuple[str, bool]:
        conn = await securedb.async_connect(url, ca_bundle=str(bed.pki.ca), **options)
        assert isinstance(conn, asyncpg.Connection)
        try:
            return await facts(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def test_async_connect_with_iam(bed: Bed, aws_env: dict[str, str]) -> None:
    assert connect_and(bed, iam_url(bed), auth="iam") == ("iam_user", True)


def test_a_tunnel_verifies_the_rds_name(bed: Bed, aws_env: dict[str, str]) -> None:
    """The socket goes to the forward; TLS and the token name the real endpoint."""
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    url = f"postgresql+asyncpg://iam_user@{certs.PG_INSTANCE}/app"
    tunnel = f"127.0.0.1:{fwd.port}"
    assert connect_and(bed, url, auth="iam", tunnel=tunnel) == ("iam_user", True)
    assert fwd.accepted == 1
    assert bed.verifier_log.read_text().splitlines()[-1].endswith("pg iam_user ok")
    # A name the certificate does not carry is refused, through the same tunnel.
    with pytest.raises(errors.TLSError, match=r"does not name db\.example\.com"):
        connect_and(
            bed,
            "postgresql+asyncpg://iam_user@db.example.com/app",
            auth="iam",
            region="us-east-1",
            tunnel=tunnel,
        )


def test_refusals_before_any_credential(bed: Bed, aws_env: dict[str, str]) -> None:
    before = bed.verifier_log.read_text()
    with pytest.raises(errors.TLSError, match="not trusted"):
        asyncio.run(
            securedb.async_connect(iam_url(bed), auth="iam", ca_bundle=str(bed.pki.untrusted_ca))
        )
    assert bed.verifier_log.read_text() == before  # no token reached a server
    with fakes.FakeServer(fakes.pg_without_tls) as server, pytest.raises(errors.TLSError):
        asyncio.run(
            securedb.async_connect(
                f"postgresql+asyncpg://iam_user@127.0.0.1:{server.port}/app",
                auth="iam",
                ca_bundle=str(bed.pki.ca),
            )
        )
    assert b"iam_user" not in server.received  # the startup message never went
    assert b"X-Amz" not in server.received


def test_a_refused_password_leaves_no_secret(bed: Bed) -> None:
    url = f"postgresql+asyncpg://{postgres.APP_USER}:wrong-pw-sentinel@localhost:{bed.primary.port}/app"
    with pytest.raises(errors.AuthenticationError) as caught:
        asyncio.run(securedb.async_connect(url, ca_bundle=str(bed.pki.ca)))
    error = caught.value
    assert "wrong-pw-sentinel" not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None
    # tests/test_secrecy.py walks its traceback's frames too.


def test_dead_peer_detection_on_the_socket(bed: Bed) -> None:
    """asyncpg has no keepalive settings: securedb sets psycopg's on the socket."""
    url = f"postgresql+asyncpg://{postgres.APP_USER}:{postgres.APP_PASSWORD}@localhost:{bed.primary.port}/app"

    async def main() -> dict[int, int]:
        conn = await securedb.async_connect(url, ca_bundle=str(bed.pki.ca))
        try:
            sock = conn._transport.get_extra_info("socket")
            return {
                option: sock.getsockopt(level, option)
                for level, option, _ in adapter.SOCKET_OPTIONS
            }
        finally:
            await conn.close()

    got = asyncio.run(main())
    assert got[socket.SO_KEEPALIVE] == 1
    assert got[socket.TCP_KEEPIDLE] == 5
    assert got[socket.TCP_USER_TIMEOUT] == 9000


@pytest.mark.parametrize(
    ("spelling", "driver"),
    [
        ("postgresql+asyncpg", "AsyncAdapt_asyncpg_connection"),
        ("postgresql+psycopg_async", "AsyncAdapt_psycopg_connection"),
        ("postgresql", "AsyncAdapt_psycopg_connection"),
    ],
)
def test_async_engine_follows_the_url_spelling(
    bed: Bed, aws_env: dict[str, str], spelling: str, driver: str
) -> None:
    url = f"{spelling}://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"

    async def main() -> tuple[str, str]:
        eng = securedb.async_engine(url, auth="iam", ca_bundle=str(bed.pki.ca))
        try:
            async with eng.connect() as conn:
                user = (await conn.execute(sa.text("SELECT current_user"))).scalar()
                raw = await conn.get_raw_connection()
                return str(user), type(raw.dbapi_connection).__name__
        finally:
            await eng.dispose()

    assert asyncio.run(main()) == ("iam_user", driver)


def test_a_sqlalchemy_url_object_is_accepted(bed: Bed) -> None:
    url = sa.URL.create(
        "postgresql+asyncpg",
        username=postgres.APP_USER,
        password=postgres.APP_PASSWORD,
        host="localhost",
        port=bed.primary.port,
        database="app",
    )
    cfg = Config.from_url(url)
    assert (cfg.engine, cfg.driver, cfg.password, cfg.port) == (
        "postgresql",
        "asyncpg",
        postgres.APP_PASSWORD,
        bed.primary.port,
    )
    assert connect_and(bed, url) == (postgres.APP_USER, True)  # type: ignore[arg-type]


def test_asyncpg_is_async_only() -> None:
    with pytest.raises(errors.ConfigError, match="asyncpg is async only"):
        securedb.engine("postgresql+asyncpg://u@localhost/db", auth="iam")
    with pytest.raises(errors.ConfigError, match="asyncpg is async only"):
        securedb.connect("postgresql+asyncpg://u:pw@localhost:1/db")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"ssl": False}, "'ssl' is securedb's"),
        ({"dsn": "postgresql://evil.example.com/db"}, "'dsn' is securedb's"),
        ({"host": "evil.example.com"}, "'host' is securedb's"),
        ({"passfile": "/tmp/x"}, "'passfile' is securedb's"),
        ({"direct_tls": True}, "would weaken TLS"),
        ({"krbsrvname": "postgres"}, "would weaken TLS"),
        ({"sslmode": "disable"}, "unknown asyncpg argument 'sslmode'"),
    ],
)
def test_the_merge_point_refuses(args: dict[str, Any], says: str) -> None:
    cfg = Config.from_url(
        f"postgresql+asyncpg://u@{certs.PG_INSTANCE}/db", auth="iam", connect_args=args
    )
    with pytest.raises(errors.ConfigError, match=says):
        Connector(cfg)


def test_securedb_keys_win_and_proxies_get_no_statement_cache() -> None:
    from securedb.credentials.base import Credential

    cfg = Config.from_url(
        f"postgresql+asyncpg://u@{certs.PROXY}/db",
        auth="iam",
        connect_args={"statement_cache_size": 100, "command_timeout": 3},
    )
    kwargs = adapter.connect_kwargs(cfg, Credential("u", "token"), {})
    assert kwargs["statement_cache_size"] == 0
    assert kwargs["command_timeout"] == 3
    assert kwargs["host"] == certs.PROXY
    assert kwargs["ssl"].pinned_name == certs.PROXY
    assert kwargs["ssl"].verify_mode.name == "CERT_REQUIRED"
    assert kwargs["ssl"].check_hostname


def test_classification() -> None:
    import ssl

    exc = asyncpg.exceptions
    assert adapter.classify(exc.InvalidPasswordError("x")) is Failure.AUTH
    assert adapter.classify(exc.AdminShutdownError("x")) is Failure.FAILOVER
    assert adapter.classify(exc.ConnectionDoesNotExistError("x")) is Failure.FAILOVER
    assert adapter.classify(exc.ReadOnlySQLTransactionError("x")) is Failure.READ_ONLY
    assert adapter.classify(exc.UniqueViolationError("x")) is None
    assert adapter.classify(ConnectionRefusedError()) is Failure.FAILOVER
    assert adapter.classify(ConnectionError('server at "h:1" rejected SSL upgrade')) is Failure.TLS
    assert adapter.classify(ssl.SSLCertVerificationError("certificate verify failed")) is (
        Failure.TLS
    )
    assert adapter.classify(ssl.SSLError("EOF occurred in violation of protocol")) is (
        Failure.FAILOVER
    )
    assert adapter.classify(FileNotFoundError()) is None  # not the connection's


@pytest.mark.slow
def test_30_tasks_across_token_lifetimes(bed: Bed, aws_env: dict[str, str]) -> None:
    """30 tasks make new asyncpg connections over 17 s of 8-second tokens: no error."""
    eng = securedb.async_engine(
        iam_url(bed), auth="iam", ca_bundle=str(bed.pki.ca), iam_token_ttl=8, poolclass=sa.NullPool
    )
    tokens: set[str] = set()
    errors_seen: list[str] = []
    done = [0]

    async def task(deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                async with eng.connect() as conn:
                    user = (await conn.execute(sa.text("SELECT current_user"))).scalar()
                    assert user == "iam_user"
                    raw = await conn.get_raw_connection()
                    tokens.add(raw.driver_connection._params.password)
                done[0] += 1
            except Exception as exc:
                errors_seen.append(f"{type(exc).__name__}: {exc}")

    async def main() -> None:
        deadline = time.monotonic() + 17
        await asyncio.gather(*(task(deadline) for _ in range(30)))
        await eng.dispose()

    asyncio.run(main())
    assert errors_seen == []
    assert done[0] >= 30
    assert len(tokens) >= 3


def test_async_pool_is_asyncpgs_own(bed: Bed, aws_env: dict[str, str]) -> None:
    """asyncpg's Pool, whose every connection securedb opens with a fresh credential."""

    async def main() -> list[tuple[str, bool]]:
        async with securedb.async_pool(
            iam_url(bed), auth="iam", ca_bundle=str(bed.pki.ca), min_size=2, max_size=2
        ) as pool:
            assert isinstance(pool, asyncpg.Pool)
            seen = []
            for _ in range(2):
                async with pool.acquire() as conn:
                    seen.append(await facts(conn))
            return seen

    assert asyncio.run(main()) == [("iam_user", True)] * 2


def test_a_connection_lost_after_commit_is_not_retried(bed: Bed, aws_env: dict[str, str]) -> None:
    """asyncpg resets a connection as the pool takes it back: when that fails after the
    COMMIT (the writer went down just then), the transaction was committed and must not
    run again. Found as a key written twice in the writer-flip test."""
    runs = []

    async def lost(conn: Any) -> None:
        raise asyncpg.ConnectionDoesNotExistError("connection lost after COMMIT")

    async def unit(conn: Any) -> int:
        runs.append(1)
        return int(await conn.fetchval("SELECT 1"))

    async def main() -> int:
        async with securedb.async_pool(
            iam_url(bed), auth="iam", ca_bundle=str(bed.pki.ca), max_size=1, reset=lost
        ) as pool:
            return await securedb.run_transaction_async(pool, unit)

    assert asyncio.run(main()) == 1
    assert runs == [1]


def test_async_pool_refuses_weakening_kwargs(bed: Bed) -> None:
    with pytest.raises(errors.ConfigError, match="'ssl' is securedb's"):
        securedb.async_pool(
            f"postgresql://u@{certs.PG_INSTANCE}/db", auth="iam", driver="asyncpg", ssl=False
        )
