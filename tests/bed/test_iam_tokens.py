"""The token verifier, reached through PAM by PostgreSQL, MariaDB and PgBouncer.

Tokens are minted by botocore, exactly as RDS clients make them.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from typing import Any

import psycopg
import pymysql
import pytest

from bed import certs, mariadb, pam, postgres, tokens
from bed.bed import Bed

pytestmark = pytest.mark.bed

Login = Callable[[str, str], str]  # (user, token) -> current_user, or raises


def pg_login(bed: Bed, port: int) -> Login:
    def login(user: str, token: str) -> str:
        with psycopg.connect(
            host="localhost",
            port=port,
            dbname="app",
            user=user,
            password=token,
            sslmode="verify-full",
            sslrootcert=str(bed.pki.ca),
            gssencmode="disable",
            connect_timeout=5,
            prepare_threshold=None,
        ) as conn:
            row = conn.execute("SELECT current_user").fetchone()
            assert row is not None
            return str(row[0])

    return login


def my_login(bed: Bed) -> Login:
    def login(user: str, token: str) -> str:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=bed.mariadb.port,
            user=user,
            password=token,
            database="app",
            connect_timeout=5,
            ssl=ssl.create_default_context(cafile=str(bed.pki.ca)),
        )
        with conn, conn.cursor() as cur:
            cur.execute("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
            return str(cur.fetchone()[0])

    return login


@pytest.fixture(params=["postgres", "mariadb", "pgbouncer"])
def server(
    request: pytest.FixtureRequest, bed: Bed
) -> tuple[Login, str, int, str, type[Exception]]:
    """(login, host, port, expected current_user, refusal error) for each IAM-capable server."""
    if request.param == "postgres":
        return (
            pg_login(bed, bed.primary.port),
            "localhost",
            bed.primary.port,
            postgres.IAM_USER,
            psycopg.OperationalError,
        )
    if request.param == "mariadb":
        return (
            my_login(bed),
            "127.0.0.1",
            bed.mariadb.port,
            mariadb.IAM_USER,
            pymysql.OperationalError,
        )
    # PgBouncer takes the token and, like RDS Proxy, logs in to the database as itself.
    return (
        pg_login(bed, bed.proxy_iam.port),
        "localhost",
        bed.proxy_iam.port,
        postgres.APP_USER,
        psycopg.OperationalError,
    )


def test_valid_token_accepted(server: Any) -> None:
    login, host, port, current_user, _ = server
    assert login("iam_user", tokens.mint(host, port, "iam_user")) == current_user


def test_session_token_of_1_5_kb_accepted(server: Any) -> None:
    login, host, port, current_user, _ = server
    token = tokens.mint(host, port, "iam_user", session_token="FwoGZXIvYXdzE" + "A" * 1500)
    assert len(token) > 1500
    assert login("iam_user", token) == current_user


def _tampered(host: str, port: int) -> str:
    token = tokens.mint(host, port, "iam_user")
    last = token[-1]
    return token[:-1] + ("0" if last != "0" else "1")


BAD_TOKENS: dict[str, Callable[[str, int], str]] = {
    "tampered": _tampered,
    "expired": lambda host, port: tokens.mint(
        host,
        port,
        "iam_user",
        signed_at=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=16),
    ),
    "wrong user": lambda host, port: tokens.mint(host, port, "app_user"),
    "wrong host": lambda host, port: tokens.mint("db.example.com", port, "iam_user"),
    "wrong port": lambda host, port: tokens.mint(host, port + 1, "iam_user"),
    "wrong key": lambda host, port: tokens.mint(
        host, port, "iam_user", secret_key="not-the-bed-secret-key"
    ),
    "not a token": lambda host, port: "hunter2",
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_bad_token_refused(server: Any, bed: Bed, kind: str) -> None:
    login, host, port, _, refusal = server
    token = BAD_TOKENS[kind](host, port)
    with pytest.raises(refusal):
        login("iam_user", token)
    for log in (bed.verifier_log, pam.SHARED / "verifier.log"):
        assert token not in log.read_text(), "the verifier must never log a token"


def test_tunnel_endpoint_names_accepted(bed: Bed) -> None:
    """Through a tunnel the token names the real endpoint (RDS name and port), not loopback."""
    token = tokens.mint(certs.PG_INSTANCE, 5432, "iam_user")
    with psycopg.connect(
        host=certs.PG_INSTANCE,
        hostaddr="127.0.0.1",
        port=bed.primary.port,
        dbname="app",
        user="iam_user",
        password=token,
        sslmode="verify-full",
        sslrootcert=str(bed.pki.ca),
        gssencmode="disable",
    ) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("iam_user",)
