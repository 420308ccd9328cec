"""The bed's servers speak verified TLS only, with the raw drivers."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from bed import certs, mariadb, postgres
from bed.bed import Bed

pytestmark = pytest.mark.bed


def pg_connect(
    bed: Bed, port: int, ca: Path, host: str = "localhost", **kw: Any
) -> psycopg.Connection:
    params: dict[str, Any] = {
        "host": host,
        "port": port,
        "dbname": "app",
        "user": postgres.APP_USER,
        "password": postgres.APP_PASSWORD,
        "sslmode": "verify-full",
        "sslrootcert": str(ca),
        "gssencmode": "disable",
        "connect_timeout": 5,
    }
    return psycopg.connect(**{**params, **kw})


def my_connect(bed: Bed, ca: Path, server_name: str = "127.0.0.1", **kw: Any) -> Any:
    """PyMySQL verifying `server_name` while the socket goes to the bed's loopback port."""
    context = ssl.create_default_context(cafile=str(ca))
    conn = pymysql.connect(
        host=server_name,
        user=mariadb.APP_USER,
        password=mariadb.APP_PASSWORD,
        database="app",
        ssl=context,
        defer_connect=True,
        **kw,
    )
    conn.connect(socket.create_connection(("127.0.0.1", bed.mariadb.port), timeout=5))
    return conn


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", certs.PG_INSTANCE, certs.PG_CLUSTER])
def test_postgres_verify_full_accepted(bed: Bed, host: str) -> None:
    with pg_connect(bed, bed.primary.port, bed.pki.ca, host=host, hostaddr="127.0.0.1") as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert row.fetchone() in [(True, "TLSv1.2"), (True, "TLSv1.3")]


def test_postgres_untrusted_ca_refused(bed: Bed) -> None:
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        pg_connect(bed, bed.primary.port, bed.pki.untrusted_ca)


def test_postgres_host_name_mismatch_refused(bed: Bed) -> None:
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        pg_connect(bed, bed.primary.port, bed.pki.ca, host="db.example.com", hostaddr="127.0.0.1")


@pytest.mark.parametrize("port", ["primary", "replica"])
def test_postgres_plaintext_refused(bed: Bed, port: str) -> None:
    node = bed.primary if port == "primary" else bed.replica
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        pg_connect(bed, node.port, bed.pki.ca, sslmode="disable")


def test_mariadb_verify_full_accepted(bed: Bed) -> None:
    for name in ("127.0.0.1", "localhost", certs.MYSQL_INSTANCE):
        conn = my_connect(bed, bed.pki.ca, server_name=name)
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            assert cur.fetchone()[1] in ("TLSv1.2", "TLSv1.3")
        conn.close()


def assert_tls_failure(caught: pytest.ExceptionInfo[pymysql.OperationalError], why: str) -> None:
    """PyMySQL reports a certificate failure as 2003 with the ssl error inside."""
    assert caught.value.args[0] == 2003
    cause = caught.value.original_exception  # type: ignore[attr-defined]
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert why in str(cause)


def test_mariadb_untrusted_ca_refused(bed: Bed) -> None:
    with pytest.raises(pymysql.OperationalError) as caught:
        my_connect(bed, bed.pki.untrusted_ca)
    assert_tls_failure(caught, "certificate verify failed")


def test_mariadb_host_name_mismatch_refused(bed: Bed) -> None:
    with pytest.raises(pymysql.OperationalError) as caught:
        my_connect(bed, bed.pki.ca, server_name="db.example.com")
    assert_tls_failure(caught, "mismatch")


def test_mariadb_plaintext_refused(bed: Bed) -> None:
    with pytest.raises(pymysql.OperationalError) as caught:
        pymysql.connect(
            host="127.0.0.1",
            port=bed.mariadb.port,
            user=mariadb.APP_USER,
            password=mariadb.APP_PASSWORD,
            ssl_disabled=True,
            connect_timeout=5,
        )
    assert caught.value.args[0] in (1045, 3159)


def test_pgbouncer_verify_full_accepted_and_plaintext_refused(bed: Bed) -> None:
    port = bed.proxy_password.port
    with pg_connect(
        bed, port, bed.pki.ca, host=certs.PROXY, hostaddr="127.0.0.1", prepare_threshold=None
    ) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (postgres.APP_USER,)
        assert conn.pgconn.ssl_in_use
    with pytest.raises(psycopg.OperationalError):
        pg_connect(bed, port, bed.pki.ca, sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        pg_connect(bed, port, bed.pki.untrusted_ca)
