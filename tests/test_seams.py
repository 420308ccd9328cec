"""Every seam where securedb hands arguments to a driver, pool or framework holds.

Each attempt goes to a real bed server through a tunnel, under a remote name that its
certificate does not carry: were a weakening argument let through, the token would reach
the server and its verifier would log the attempt. securedb must refuse first.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import securedb
from bed import mariadb, postgres
from bed.bed import Bed
from securedb import errors
from tests.test_django import open_alias, settings  # noqa: F401  (the fixture configures Django)

pytestmark = pytest.mark.bed

REMOTE = "db.example.com"  # not in the bed's certificates, and not loopback


@pytest.fixture
def pg_url(bed: Bed) -> str:
    return f"postgresql://{postgres.IAM_USER}@{REMOTE}:5432/app"


def options(bed: Bed, port: int) -> dict[str, Any]:
    return {
        "auth": "iam",
        "region": "us-east-1",
        "ca_bundle": str(bed.pki.ca),
        "tunnel": f"127.0.0.1:{port}",
    }


def refused_before_the_server(bed: Bed, attempt: Callable[[], Any], match: str) -> None:
    """`attempt` raises a ConfigError naming the key, and no login reached the server."""
    before = bed.verifier_log.read_text()
    with pytest.raises(errors.ConfigError, match=match):
        attempt()
    assert bed.verifier_log.read_text() == before


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "prefer", "allow", "disable"])
def test_pool_kwargs(bed: Bed, aws_env: dict[str, str], pg_url: str, sslmode: str) -> None:
    def attempt() -> Any:
        pool = securedb.pool(
            pg_url, **options(bed, bed.primary.port), kwargs={"sslmode": sslmode}, open=False
        )
        with pool, pool.connection(timeout=5):
            pass

    refused_before_the_server(bed, attempt, f"sslmode='{sslmode}' would weaken TLS")


def test_pool_conninfo(bed: Bed, aws_env: dict[str, str], pg_url: str) -> None:
    def attempt() -> Any:
        return securedb.pool(
            pg_url, **options(bed, bed.primary.port), conninfo="sslmode=disable", open=False
        )

    refused_before_the_server(bed, attempt, "no conninfo")


@pytest.mark.parametrize(
    ("connect_args", "match"),
    [
        ({"host": "127.0.0.1"}, "'host' is securedb's"),
        ({"hostaddr": "127.0.0.1"}, "'hostaddr' is securedb's"),
        ({"sslmode": "require"}, "sslmode='require' would weaken TLS"),
        ({"gssencmode": "prefer"}, "gssencmode='prefer' would weaken TLS"),
        ({"sslrootcert": "system"}, "'sslrootcert' is securedb's"),
    ],
)
def test_engine_connect_args(
    bed: Bed, aws_env: dict[str, str], pg_url: str, connect_args: dict[str, str], match: str
) -> None:
    def attempt() -> Any:
        eng = securedb.engine(pg_url, **options(bed, bed.primary.port), connect_args=connect_args)
        with eng.connect():
            pass

    refused_before_the_server(bed, attempt, match)


@pytest.mark.parametrize(
    ("host", "query", "match"),
    [
        # The loopback exemption must not follow a URL whose query names another host.
        ("localhost", f"sslmode=disable&host={REMOTE}", "'host' is securedb's"),
        (REMOTE, "sslmode=require", "sslmode='require' would weaken TLS"),
        (REMOTE, "sslnegotiation=direct", "sslnegotiation='direct' would weaken TLS"),
    ],
)
def test_url_query(bed: Bed, aws_env: dict[str, str], host: str, query: str, match: str) -> None:
    url = f"postgresql://{postgres.IAM_USER}@{host}:5432/app?{query}"
    refused_before_the_server(
        bed, lambda: securedb.connect(url, **options(bed, bed.primary.port)), match
    )


@pytest.mark.parametrize(
    ("how", "args", "match"),
    [
        ("connect_args", {"ssl_verify_identity": False}, "ssl_verify_identity=False"),
        ("connect_args", {"ssl_verify_cert": False}, "ssl_verify_cert=False"),
        ("connect_args", {"ssl_disabled": True}, "ssl_disabled=True"),
        ("connect_args", {"ssl": {"check_hostname": False}}, "argument ssl="),
        ("connect_args", {"ssl_ca": "/etc/ssl/certs/ca-certificates.crt"}, "'ssl_ca' is"),
        ("connect_args", {"read_default_file": "/etc/mysql/my.cnf"}, "'read_default_file' is"),
        ("url", {"ssl_verify_identity": "false"}, "ssl_verify_identity='false'"),
        ("url", {"ssl_disabled": "1"}, "ssl_disabled='1'"),
        ("url", {"unix_socket": "/run/mysqld/mysqld.sock"}, "'unix_socket' is"),
    ],
)
def test_pymysql_ssl_args(
    bed: Bed, aws_env: dict[str, str], how: str, args: dict[str, Any], match: str
) -> None:
    url = f"mysql://{mariadb.IAM_USER}@{REMOTE}:3306/app"
    opts = options(bed, bed.mariadb.port)
    if how == "url":
        url += "?" + "&".join(f"{k}={v}" for k, v in args.items())
    else:
        opts["connect_args"] = args
    refused_before_the_server(bed, lambda: securedb.connect(url, **opts), match)


@pytest.mark.parametrize(
    ("engine", "option", "match"),
    [
        ("postgresql", {"sslmode": "prefer"}, "sslmode='prefer' would weaken TLS"),
        ("postgresql", {"hostaddr": "127.0.0.1"}, "'hostaddr' is securedb's"),
        ("postgresql", {"host": "127.0.0.1"}, "'host' is securedb's"),
        ("postgresql", {"sslrootcert": "system"}, "'sslrootcert' is securedb's"),
        ("postgresql", {"service": "app"}, "'service' is securedb's"),
        ("postgresql", {"dbname": "postgres"}, "OPTIONS\\['dbname'\\]"),
        # Django's pool: the same keys are refused before the pool exists.
        ("postgresql", {"pool": True, "sslmode": "prefer"}, "sslmode='prefer' would weaken"),
        ("postgresql", {"pool": {"max_size": 2}, "hostaddr": "127.0.0.1"}, "'hostaddr' is"),
        ("postgresql", {"pool": {"connection_class": object}}, "\\['connection_class'\\] is"),
        ("postgresql", {"pool": {"kwargs": {"sslmode": "disable"}}}, "\\['kwargs'\\] is"),
        ("postgresql", {"pool": {"conninfo": "host=127.0.0.1"}}, "\\['conninfo'\\] is"),
        ("mysql", {"ssl_verify_identity": False}, "ssl_verify_identity=False"),
        ("mysql", {"ssl": {"ca": "/etc/ssl/certs/ca-certificates.crt"}}, "argument ssl="),
        ("mysql", {"unix_socket": "/run/mysqld/mysqld.sock"}, "'unix_socket' is"),
        ("mysql", {"host": "127.0.0.1"}, "'host' is securedb's"),
        ("mysql", {"database": "mysql"}, "'database' is securedb's"),
        ("mysql", {"read_default_file": "/etc/mysql/my.cnf"}, "'read_default_file' is"),
        ("mysql", {"pool": True}, "OPTIONS\\['pool'\\] is for PostgreSQL"),
    ],
)
@pytest.mark.usefixtures("settings")
def test_django_options(
    bed: Bed, aws_env: dict[str, str], engine: str, option: dict[str, Any], match: str
) -> None:
    server, user = (
        (bed.primary, postgres.IAM_USER)
        if engine == "postgresql"
        else (bed.mariadb, mariadb.IAM_USER)
    )

    def attempt() -> Any:
        conn = open_alias(
            f"seam_{engine}",
            {
                "ENGINE": f"securedb.contrib.django.{engine}",
                "NAME": "app",
                "USER": user,
                "HOST": REMOTE,
                "PORT": 5432 if engine == "postgresql" else 3306,
                "OPTIONS": {"securedb": options(bed, server.port), **option},
            },
        )
        try:
            conn.ensure_connection()
        finally:
            conn.close()
            if engine == "postgresql":
                conn.close_pool()

    refused_before_the_server(bed, attempt, match)


def test_the_same_arguments_are_accepted_on_loopback(bed: Bed, aws_env: dict[str, str]) -> None:
    """The local-development exemption: the effective host, not the URL's, decides."""
    url = f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"
    conn = securedb.connect(
        url, auth="iam", ca_bundle=str(bed.pki.ca), connect_args={"sslmode": "require"}
    )
    try:
        assert conn.info.get_parameters()["sslmode"] == "require"
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_untrusted_rds_certificate_names_a_missing_regional_ca(
    bed: Bed, aws_env: dict[str, str], engine: str
) -> None:
    """The bundled snapshot may predate the endpoint's region: the error says what to do."""
    port = bed.primary.port if engine == "postgresql" else bed.mariadb.port
    with pytest.raises(errors.TLSError) as caught:
        securedb.connect(
            f"{engine}://iam_user@localhost:{port}/app", auth="iam", region="us-east-1"
        )
    message = str(caught.value)
    assert "rds-ca-bundle.pem" in message
    assert "region is newer than the bundled snapshot" in message
    assert "ca_bundle=" in message
    assert "securedb ca refresh" in message


def test_django_mysql_backend_leaves_pymysql_whole() -> None:
    """Django imports MySQLdb submodules; securedb must still recognise PyMySQL's errors.

    In a fresh interpreter: without securedb's aliases, Django's import made second
    copies of PyMySQL's modules and rebound ``pymysql.err`` to one of them.
    """
    pytest.importorskip("django")
    probe = (
        "import django, sys; from django.conf import settings; settings.configure(); "
        "django.setup(); import securedb.contrib.django.mysql.base; import pymysql; "
        "from securedb.drivers import mysql; "
        "print(pymysql.err is sys.modules['pymysql.err'], "
        "mysql.classify(pymysql.err.OperationalError(2013, 'lost')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "Failure.FAILOVER"]
