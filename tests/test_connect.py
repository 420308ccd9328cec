"""connect(), engine() and pool() against the bed: IAM and secrets on both engines, TLS."""

from __future__ import annotations

import json
from typing import Any

import boto3
import psycopg
import pymysql
import pytest
import sqlalchemy as sa
import trustme

import securedb
from bed import certs, mariadb, postgres
from bed.bed import Bed
from securedb import errors
from tests import fakes

pytestmark = pytest.mark.bed


@pytest.fixture
def ca(bed: Bed) -> str:
    return str(bed.pki.ca)


def pg_iam(bed: Bed) -> str:
    return f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"


def my_iam(bed: Bed) -> str:
    return f"mysql://{mariadb.IAM_USER}@127.0.0.1:{bed.mariadb.port}/app"


def make_secret(bed: Bed, name: str, engine: str) -> str:
    """An RDS-managed secret: it names the engine, host, port and database too."""
    port = bed.primary.port if engine == "postgres" else bed.mariadb.port
    host = "localhost" if engine == "postgres" else "127.0.0.1"
    boto3.client("secretsmanager").create_secret(
        Name=name,
        SecretString=json.dumps(
            {
                "username": postgres.APP_USER,
                "password": postgres.APP_PASSWORD,
                "engine": engine,
                "host": host,
                "port": port,
                "dbname": "app",
            }
        ),
    )
    return name


def pg_facts(conn: psycopg.Connection[Any]) -> tuple[str, bool]:
    row = conn.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    user, ssl_on = row.fetchone()  # type: ignore[misc]
    return user, ssl_on


def my_facts(conn: Any) -> tuple[str, bool]:
    with conn.cursor() as cur:
        cur.execute("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        user = cur.fetchone()[0]
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        version = cur.fetchone()[1]
    return user, version.startswith("TLSv1.")


def facts(conn: Any) -> tuple[str, bool]:
    return pg_facts(conn) if isinstance(conn, psycopg.Connection) else my_facts(conn)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_connect_with_iam(bed: Bed, aws_env: dict[str, str], ca: str, engine: str) -> None:
    url = pg_iam(bed) if engine == "postgresql" else my_iam(bed)
    conn = securedb.connect(url, auth="iam", ca_bundle=ca)
    try:
        assert isinstance(
            conn, psycopg.Connection if engine == "postgresql" else pymysql.connections.Connection
        )
        assert facts(conn) == ("iam_user", True)
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_connect_with_rds_managed_secret_alone(
    bed: Bed, aws_env: dict[str, str], ca: str, engine: str
) -> None:
    secret = make_secret(bed, f"rds/{engine}", engine)
    conn = securedb.connect(secret_id=secret, ca_bundle=ca)
    try:
        assert facts(conn) == ("app_user", True)
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
@pytest.mark.parametrize("auth", ["iam", "secret"])
def test_engine(bed: Bed, aws_env: dict[str, str], ca: str, engine: str, auth: str) -> None:
    if auth == "iam":
        url = pg_iam(bed) if engine == "postgres" else my_iam(bed)
        eng = securedb.engine(url, auth="iam", ca_bundle=ca, pool_size=2)
        expected = "iam_user"
    else:
        eng = securedb.engine(secret_id=make_secret(bed, f"rds/{engine}", engine), ca_bundle=ca)
        expected = "app_user"
    try:
        assert isinstance(eng, sa.Engine)
        for _ in range(3):
            with eng.connect() as conn:
                driver_conn = conn.connection.driver_connection
                assert type(driver_conn).__module__.split(".")[0] in ("psycopg", "pymysql")
                assert facts(driver_conn) == (expected, True)
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        eng.dispose()


@pytest.mark.parametrize("auth", ["iam", "secret"])
def test_pool(bed: Bed, aws_env: dict[str, str], ca: str, auth: str) -> None:
    if auth == "iam":
        pool = securedb.pool(pg_iam(bed), auth="iam", ca_bundle=ca, min_size=2, max_size=4)
        expected = "iam_user"
    else:
        pool = securedb.pool(secret_id=make_secret(bed, "rds/pg", "postgres"), ca_bundle=ca)
        expected = "app_user"
    with pool:
        for _ in range(3):
            with pool.connection() as conn:
                assert isinstance(conn, psycopg.Connection)
                assert pg_facts(conn) == (expected, True)


def test_pool_refuses_mysql(bed: Bed, aws_env: dict[str, str], ca: str) -> None:
    with pytest.raises(errors.ConfigError, match="engine"):
        securedb.pool(my_iam(bed), auth="iam", ca_bundle=ca)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_tunnel_to_rds_endpoint_name(
    bed: Bed, aws_env: dict[str, str], ca: str, engine: str
) -> None:
    """TLS checks and the token name the real endpoint; the socket goes to the forward."""
    if engine == "postgresql":
        fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
        url = f"postgresql://iam_user@{certs.PG_INSTANCE}:5432/app"
    else:
        fwd = bed.forwarder(("127.0.0.1", bed.mariadb.port))
        url = f"mysql://iam_user@{certs.MYSQL_INSTANCE}:3306/app"
    conn = securedb.connect(url, auth="iam", ca_bundle=ca, tunnel=f"localhost:{fwd.port}")
    try:
        assert facts(conn) == ("iam_user", True)
    finally:
        conn.close()
    assert fwd.accepted >= 1
    group = "pg" if engine == "postgresql" else "mysql"
    assert bed.verifier_log.read_text().splitlines()[-1].endswith(f"{group} iam_user ok")


@pytest.mark.parametrize(
    "url", ["postgresql://iam_user@localhost:{pg}/app", "mysql://iam_user@127.0.0.1:{my}/app"]
)
def test_untrusted_ca_refused(bed: Bed, aws_env: dict[str, str], url: str) -> None:
    url = url.format(pg=bed.primary.port, my=bed.mariadb.port)
    with pytest.raises(errors.TLSError, match="not trusted"):
        securedb.connect(url, auth="iam", ca_bundle=str(bed.pki.untrusted_ca))


@pytest.mark.parametrize(
    "url", ["postgresql://iam_user@localhost:{pg}/app", "mysql://iam_user@127.0.0.1:{my}/app"]
)
def test_default_trust_store_is_the_rds_bundle(bed: Bed, aws_env: dict[str, str], url: str) -> None:
    """The bed's CA is not in the bundled RDS CA: without ca_bundle= the bed is refused."""
    url = url.format(pg=bed.primary.port, my=bed.mariadb.port)
    with pytest.raises(errors.TLSError, match=r"rds-ca-bundle\.pem"):
        securedb.connect(url, auth="iam")


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_host_name_mismatch_refused(
    bed: Bed, aws_env: dict[str, str], ca: str, engine: str
) -> None:
    port = bed.primary.port if engine == "postgresql" else bed.mariadb.port
    with pytest.raises(errors.TLSError, match=r"does not name db\.example\.com"):
        securedb.connect(
            f"{engine}://iam_user@db.example.com:{port}/app",
            auth="iam",
            ca_bundle=ca,
            tunnel=f"127.0.0.1:{port}",
        )


def test_mismatch_on_localhost_suggests_a_tunnel(
    bed: Bed, aws_env: dict[str, str], tmp_path: Any
) -> None:
    """A port forward to real RDS: the certificate names the endpoint, not localhost."""
    authority = trustme.CA()
    leaf = authority.issue_cert(certs.PG_INSTANCE)
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key)
    authority.cert_pem.write_to_path(ca)
    with (
        fakes.FakeServer(fakes.pg_with_cert(str(cert), str(key))) as server,
        pytest.raises(errors.TLSError, match="tunnel="),
    ):
        securedb.connect(
            f"postgresql://iam_user@localhost:{server.port}/app", auth="iam", ca_bundle=str(ca)
        )
    assert b"iam_user" not in server.received


def test_postgres_server_without_tls_gets_no_credential(aws_env: dict[str, str], ca: str) -> None:
    with fakes.FakeServer(fakes.pg_without_tls) as server, pytest.raises(errors.TLSError):
        securedb.connect(
            f"postgresql://iam_user@127.0.0.1:{server.port}/app", auth="iam", ca_bundle=ca
        )
    assert server.received.startswith(struct_ssl_request())
    assert b"iam_user" not in server.received
    assert b"X-Amz" not in server.received


def struct_ssl_request() -> bytes:
    return bytes.fromhex("0000000804d2162f")


def test_mysql_server_without_tls_is_refused_before_login(aws_env: dict[str, str], ca: str) -> None:
    """TLS required (always, off loopback): PyMySQL refuses a server that lacks CLIENT_SSL."""
    with fakes.FakeServer(fakes.mysql_without_tls) as server, pytest.raises(errors.TLSError):
        securedb.connect(f"mysql://iam_user@127.0.0.1:{server.port}/app", auth="iam", ca_bundle=ca)
    assert b"iam_user" not in server.received
    assert b"X-Amz" not in server.received


CLEARTEXT_PASSWORD = "never-in-clear-0"


@pytest.mark.parametrize("plugin", sorted(fakes.CLEARTEXT_SWITCHES))
@pytest.mark.parametrize("auth", ["iam", "password"])
def test_mysql_server_without_tls_gets_no_credential(
    aws_env: dict[str, str], ca: str, plugin: str, auth: str
) -> None:
    """securedb's own guard: no password in clear on a connection without TLS.

    PyMySQL refuses a server without TLS only when TLS is required; on loopback a
    developer may turn TLS off (``ssl_disabled``), and PyMySQL would then answer a
    server's switch to a cleartext plugin with the password as it is. securedb does not.
    """
    password = f":{CLEARTEXT_PASSWORD}" if auth == "password" else ""
    with fakes.FakeServer(fakes.mysql_cleartext_switch(plugin)) as server:
        refused = caught(
            lambda: securedb.connect(
                f"mysql://app_user{password}@127.0.0.1:{server.port}/app",
                auth=auth,
                ca_bundle=ca,
                connect_args={"ssl_disabled": True},
            )
        )
    assert b"app_user" in server.received  # the login got as far as the switch
    assert CLEARTEXT_PASSWORD.encode() not in server.received
    assert b"X-Amz" not in server.received
    assert isinstance(refused, errors.TLSError)
    assert "verified TLS" in str(refused)


def caught(action: Any) -> BaseException:
    try:
        action()
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


def test_weakened_tls_refused_before_any_network() -> None:
    with pytest.raises(errors.ConfigError, match="weaken TLS"):
        securedb.connect(
            f"mysql://iam_user@{certs.MYSQL_INSTANCE}/app",
            auth="iam",
            connect_args={"ssl_disabled": True},
        )


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_refused_credentials_raise_authentication_error(
    bed: Bed, aws_env: dict[str, str], ca: str, engine: str
) -> None:
    port = bed.primary.port if engine == "postgresql" else bed.mariadb.port
    host = "localhost" if engine == "postgresql" else "127.0.0.1"
    with pytest.raises(errors.AuthenticationError, match="app_user@"):
        securedb.connect(f"{engine}://app_user:wrong-password@{host}:{port}/app", ca_bundle=ca)
    # app_user has no IAM login: its token is refused even after a fresh one is signed.
    with pytest.raises(errors.AuthenticationError, match="rds-db:connect"):
        securedb.connect(f"{engine}://app_user@{host}:{port}/app", auth="iam", ca_bundle=ca)
