"""Every seam where securedb hands arguments to a driver, pool or framework holds.

Each attempt goes to a real bed server through a tunnel, under a remote name that its
certificate does not carry: were a weakening argument let through, the token would reach
the server and its verifier would log the attempt. securedb must refuse first.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import boto3
import psycopg
import pytest
import sqlalchemy as sa

import securedb
from bed import mariadb, postgres
from bed.bed import Bed
from securedb import errors
from securedb.config import Config
from tests import fakes
from tests.test_django import (  # noqa: F401  (the fixture configures Django)
    current,
    open_alias,
    settings,
)

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
        ("connect_args", {"ssl": {"check_hostname": False}}, "argument ssl would weaken"),
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
        (
            "mysql",
            {"ssl": {"ca": "/etc/ssl/certs/ca-certificates.crt"}},
            "argument ssl would weaken",
        ),
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


# --- every entry point ------------------------------------------------------------------
#
# The same driver arguments, whichever way a caller hands them over: `connect_args=` of
# connect, engine and the async twins, the URL's query, a pool's `kwargs=`, Django's
# OPTIONS. `open_through` opens one connection through an entry point and tells, from
# the server's side, who logged in and whether TLS is on.

PG_ENTRIES = (
    "connect",
    "url",
    "engine",
    "pool",
    "async_connect",
    "async_engine",
    "async_pool",
    "django",
)
MYSQL_ENTRIES = ("connect", "url", "engine", "async_connect", "async_engine", "django")
PG_FACTS = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
MYSQL_FACTS = (
    "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1), "
    "(SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
    "WHERE VARIABLE_NAME = 'Ssl_version') <> ''"
)


def with_query(url: str, args: Mapping[str, Any]) -> str:
    """`url` with `args` in its query (as the strings a URL carries)."""
    if not args:
        return url
    return url + ("&" if "?" in url else "?") + urlencode({k: str(v) for k, v in args.items()})


def open_through(
    entry: str,
    url: str | Config | None,
    options: Mapping[str, Any],
    args: Mapping[str, Any],
    timeout: float = 5.0,
) -> tuple[str, bool]:
    """Open one connection through `entry` with driver arguments `args`, and close it.

    Returns the user logged in and whether TLS is on, as the server sees them. A pool
    waits `timeout` seconds for its connection. With no URL (a secret names the
    endpoint) the engine is PostgreSQL.
    """
    if isinstance(url, Config):
        engine = url.engine or ""
    else:
        engine = url.split(":", 1)[0] if url else "postgresql"
    given = {"connect_args": dict(args)} if args else {}
    if entry == "url":
        assert isinstance(url, str)
        return _sync_facts(securedb.connect(with_query(url, args), **options))
    if entry == "connect":
        return _sync_facts(securedb.connect(url, **options, **given))
    if entry == "engine":
        eng = securedb.engine(url, **options, **given)
        try:
            with eng.connect() as conn:
                user, tls = conn.execute(sa.text(_facts_query(engine))).one()
                return user, bool(tls)
        finally:
            eng.dispose()
    if entry == "pool":
        pool = securedb.pool(url, **options, kwargs=dict(args), open=False)
        with pool, pool.connection(timeout=timeout) as conn:
            return _sync_facts(conn, close=False)
    if entry == "django":
        return _django_facts(url, options, args)
    return asyncio.run(_open_async(entry, engine, url, options, given, timeout))


def _facts_query(engine: str) -> str:
    return PG_FACTS if engine.startswith("postgres") else MYSQL_FACTS


def _sync_facts(conn: Any, close: bool = True) -> tuple[str, bool]:
    try:
        with conn.cursor() as cursor:
            is_pg = isinstance(conn, psycopg.Connection)
            cursor.execute(PG_FACTS if is_pg else MYSQL_FACTS)
            user, tls = cursor.fetchone()
        return user, bool(tls)
    finally:
        if close:
            conn.close()


async def _open_async(
    entry: str,
    engine: str,
    url: str | Config | None,
    options: Mapping[str, Any],
    given: dict[str, Any],
    timeout: float,
) -> tuple[str, bool]:
    if entry == "async_connect":
        conn = await securedb.async_connect(url, **options, **given)
        try:
            if isinstance(conn, psycopg.AsyncConnection):
                row = await (await conn.execute(PG_FACTS)).fetchone()
            else:
                async with conn.cursor() as cursor:
                    await cursor.execute(MYSQL_FACTS)
                    row = await cursor.fetchone()
            assert row is not None
            return row[0], bool(row[1])
        finally:
            if isinstance(conn, psycopg.AsyncConnection):
                await conn.close()
            else:
                await conn.ensure_closed()
    if entry == "async_engine":
        eng = securedb.async_engine(url, **options, **given)
        try:
            async with eng.connect() as conn:
                user, tls = (await conn.execute(sa.text(_facts_query(engine)))).one()
                return user, bool(tls)
        finally:
            await eng.dispose()
    assert entry == "async_pool", entry
    async with (
        securedb.async_pool(url, **options, kwargs=given.get("connect_args", {})) as pool,
        pool.connection(timeout=timeout) as conn,
    ):
        row = await (await conn.execute(PG_FACTS)).fetchone()
        assert row is not None
        return row[0], bool(row[1])


def _django_facts(
    url: str | Config | None, options: Mapping[str, Any], args: Mapping[str, Any]
) -> tuple[str, bool]:
    """Through a Django backend whose settings say what `url` says; `args` in OPTIONS."""
    if url is None:  # a secret names the endpoint
        url = "postgresql://"
    if isinstance(url, Config):
        engine, host, port, user, password, name = (
            url.engine or "",
            url.host,
            url.port,
            url.user,
            url.password,
            url.dbname,
        )
    else:
        parts = urlsplit(url)
        engine, host, port = parts.scheme, parts.hostname, parts.port
        user, password = parts.username, parts.password
        name = parts.path.lstrip("/")
    conn = open_alias(
        f"seams_{engine}",
        {
            "ENGINE": f"securedb.contrib.django.{engine}",
            "NAME": name or "app",
            "USER": unquote(user or ""),
            "PASSWORD": unquote(password or ""),
            "HOST": host or "",
            "PORT": port or "",
            "OPTIONS": {"securedb": dict(options), **args},
        },
    )
    try:
        conn.ensure_connection()
        _, user_in, tls = current(conn)
        return user_in, tls
    finally:
        conn.close()
        if engine == "postgresql":
            conn.close_pool()


def entry_cases(entries: tuple[str, ...], cases: list[tuple[Any, ...]]) -> list[Any]:
    """Every case through every entry, with readable ids."""
    return [
        pytest.param(entry, *case, id=f"{entry}-{case[0]}") for entry in entries for case in cases
    ]


def weakening(entry: str, name: str, value: Any) -> str:
    """The refusal's words for `name`=`value`, as the entry point carries the value."""
    shown = repr(str(value)) if entry == "url" else repr(value)
    return re.escape(f"driver argument {name}={shown} would weaken TLS")


# PyMySQL rebuilds its own SSLContext (the system store, no host name check) as soon as it
# is given any of these, whatever the value: even the ones that read as "verify".
PYMYSQL_TLS_VALUES = [
    ("ssl_verify_identity", True),
    ("ssl_verify_cert", 1),
    ("ssl", "require"),
    ("ssl_disabled", False),
]


@pytest.mark.parametrize(("entry", "name", "value"), entry_cases(MYSQL_ENTRIES, PYMYSQL_TLS_VALUES))
def test_pymysql_tls_keys_are_refused_whatever_their_value(
    request: pytest.FixtureRequest,
    bed: Bed,
    aws_env: dict[str, str],
    entry: str,
    name: str,
    value: Any,
) -> None:
    if entry == "django":
        request.getfixturevalue("settings")
    url = f"mysql://{mariadb.IAM_USER}@{REMOTE}:3306/app"
    refused_before_the_server(
        bed,
        lambda: open_through(entry, url, options(bed, bed.mariadb.port), {name: value}),
        weakening(entry, name, value),
    )


# Parameters that carry other parameters past a check by name: a conninfo string, psycopg
# 2's dsn, a service (whose file names the server).
PG_CARRIERS = [
    ("conninfo", "hostaddr=127.0.0.2 sslmode=disable"),
    ("dsn", "host=127.0.0.2 sslmode=disable"),
    ("service", "app"),
]


@pytest.mark.parametrize(("entry", "name", "value"), entry_cases(PG_ENTRIES, PG_CARRIERS))
def test_postgres_carriers_are_refused(
    request: pytest.FixtureRequest,
    bed: Bed,
    aws_env: dict[str, str],
    pg_url: str,
    entry: str,
    name: str,
    value: str,
) -> None:
    if entry == "django":
        request.getfixturevalue("settings")
    refused_before_the_server(
        bed,
        lambda: open_through(entry, pg_url, options(bed, bed.primary.port), {name: value}),
        f"'{name}' is securedb's",
    )


@pytest.mark.parametrize("entry", ["url", "engine", "django"])
def test_the_reviewed_conninfo_attack(
    request: pytest.FixtureRequest, bed: Bed, aws_env: dict[str, str], entry: str
) -> None:
    """``...@localhost/db?sslmode=disable&conninfo=hostaddr%3D127.0.0.2``, with a token.

    The host is loopback, so sslmode=disable is the local-development exemption; the
    conninfo would send the socket elsewhere with it. Refused on loopback too.
    """
    if entry == "django":
        request.getfixturevalue("settings")
    url = f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"
    args = {"sslmode": "disable", "conninfo": "hostaddr=127.0.0.2"}
    opts = {"auth": "iam", "region": "us-east-1", "ca_bundle": str(bed.pki.ca)}
    if entry == "url":
        assert with_query(url, args).endswith("?sslmode=disable&conninfo=hostaddr%3D127.0.0.2")
    refused_before_the_server(
        bed, lambda: open_through(entry, url, opts, args), "'conninfo' is securedb's"
    )


# --- relaxed TLS: only when every destination is this machine ---------------------------

BASTION = "bastion.example.com"  # a tunnel's other machine; the test's DNS sends it to the bed


@pytest.fixture
def bastion_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", fakes.resolving({BASTION: "127.0.0.1"}))


@pytest.mark.parametrize(
    ("entry", "engine", "name", "value"),
    [
        *entry_cases(PG_ENTRIES, [("postgresql", "sslmode", "disable")]),
        *entry_cases(MYSQL_ENTRIES, [("mysql", "ssl_disabled", True)]),
    ],
)
@pytest.mark.usefixtures("bastion_dns")
def test_relaxed_tls_is_refused_through_a_tunnel_to_another_machine(
    request: pytest.FixtureRequest,
    bed: Bed,
    aws_env: dict[str, str],
    entry: str,
    engine: str,
    name: str,
    value: Any,
) -> None:
    """A loopback host and a tunnel off this machine: the socket leaves it, TLS stays."""
    if entry == "django":
        request.getfixturevalue("settings")
    server = bed.primary if engine == "postgresql" else bed.mariadb
    url = f"{engine}://iam_user@localhost:{server.port}/app"
    opts = {**options(bed, server.port), "tunnel": f"{BASTION}:{server.port}"}
    refused_before_the_server(
        bed, lambda: open_through(entry, url, opts, {name: value}), weakening(entry, name, value)
    )


@pytest.mark.parametrize("tunnel", ["192.0.2.10:5432", "[2001:db8::10]:5432", "198.51.100.10:5432"])
def test_relaxed_tls_is_refused_for_a_tunnel_address_off_loopback(
    bed: Bed, aws_env: dict[str, str], tunnel: str
) -> None:
    url = f"postgresql://{postgres.IAM_USER}@localhost/app?sslmode=disable&tunnel={tunnel}"
    refused_before_the_server(
        bed,
        lambda: securedb.connect(url, auth="iam", region="us-east-1"),
        "sslmode='disable' would weaken TLS",
    )


@pytest.mark.parametrize(
    "host", ["/var/run/postgresql,evil.example.com", "localhost,evil.example.com", "a,b"]
)
@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_host_lists_are_refused(engine: str, host: str) -> None:
    """libpq would try the next host after a local one; securedb takes one host."""
    relaxed = {"sslmode": "disable"} if engine == "postgresql" else {"ssl_disabled": True}
    with pytest.raises(errors.ConfigError, match="securedb takes no host lists"):
        Config(
            auth="password",
            engine=engine,  # type: ignore[arg-type]
            host=host,
            user="app",
            password="pw",
            dbname="app",
            connect_args=relaxed,
        )
    if not host.startswith("/"):
        with pytest.raises(errors.ConfigError, match="securedb takes no host lists"):
            securedb.connect(f"{engine}://app:pw@{host}/app", connect_args=relaxed)


@pytest.mark.parametrize("entry", [e for e in PG_ENTRIES if e != "url"])
def test_a_secrets_host_list_is_refused(
    request: pytest.FixtureRequest, bed: Bed, aws_env: dict[str, str], entry: str
) -> None:
    """An RDS-managed secret names the host: a list there is refused like one in a URL."""
    if entry == "django":
        request.getfixturevalue("settings")
    boto3.client("secretsmanager").create_secret(
        Name="rds/seams-host-list",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": "/var/run/postgresql,evil.example.com",
                "port": bed.primary.port,
                "dbname": "app",
                "username": postgres.APP_USER,
                "password": postgres.APP_PASSWORD,
            }
        ),
    )
    opts = {"secret_id": "rds/seams-host-list", "region": "us-east-1"}
    # Django names the engine, so relaxed TLS is refused before the secret is read (its
    # host is not known yet); elsewhere the secret names the engine too.
    args = {} if entry == "django" else {"sslmode": "disable"}
    refused_before_the_server(
        bed, lambda: open_through(entry, None, opts, args), "securedb takes no host lists"
    )


# --- libpq's environment ----------------------------------------------------------------


@pytest.fixture
def impostor(bed: Bed) -> Iterator[fakes.FakeServer]:
    """A recording PostgreSQL server on 127.0.0.2, at the primary's port."""
    with fakes.FakeServer(
        fakes.pg_cleartext_password, host="127.0.0.2", port=bed.primary.port
    ) as server:
        yield server


def service_file(path: Path, impostor: fakes.FakeServer) -> Path:
    """A service file whose every likely service name points at `impostor`, in plaintext."""
    entry = f"host=127.0.0.2\nhostaddr=127.0.0.2\nport={impostor.port}\nsslmode=disable\n"
    names = ("app", "iam_user", "postgres", "localhost", "securedb", "default")
    path.write_text("".join(f"[{name}]\n{entry}\n" for name in names))
    return path


def local_iam(bed: Bed) -> tuple[str, dict[str, Any]]:
    url = f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"
    return url, {"auth": "iam", "region": "us-east-1", "ca_bundle": str(bed.pki.ca)}


@pytest.mark.parametrize("entry", PG_ENTRIES)
def test_pghostaddr_is_cancelled(
    request: pytest.FixtureRequest,
    bed: Bed,
    aws_env: dict[str, str],
    impostor: fakes.FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    entry: str,
) -> None:
    """libpq would send the socket to PGHOSTADDR; it goes to the endpoint, verify-full."""
    if entry == "django":
        request.getfixturevalue("settings")
    monkeypatch.setenv("PGHOSTADDR", "127.0.0.2")
    url, opts = local_iam(bed)
    before = token_logins(bed)
    assert open_through(entry, url, opts, {}) == ("iam_user", True)
    assert impostor.accepted == 0
    assert token_logins(bed) > before


@pytest.mark.parametrize("entry", PG_ENTRIES)
def test_pgservice_is_refused(
    request: pytest.FixtureRequest,
    bed: Bed,
    aws_env: dict[str, str],
    impostor: fakes.FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    entry: str,
) -> None:
    """A service cannot be cancelled (it may name another server): a set PGSERVICE is an
    error naming it, from every entry point (a pool's, before its workers start)."""
    if entry == "django":
        request.getfixturevalue("settings")
    monkeypatch.setenv("PGSERVICEFILE", str(service_file(tmp_path / "pg_service.conf", impostor)))
    monkeypatch.setenv("PGSERVICE", "app")
    url, opts = local_iam(bed)
    message = "PGSERVICE is set in the environment"
    before = bed.verifier_log.read_text()
    with pytest.raises(errors.ConfigError, match=message):
        open_through(entry, url, opts, {})
    assert bed.verifier_log.read_text() == before
    assert impostor.accepted == 0


@pytest.mark.parametrize("entry", PG_ENTRIES)
def test_pgservicefile_alone_changes_nothing(
    request: pytest.FixtureRequest,
    bed: Bed,
    aws_env: dict[str, str],
    impostor: fakes.FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    entry: str,
) -> None:
    """A service file is read only for a named service: the URL's server is the one."""
    if entry == "django":
        request.getfixturevalue("settings")
    monkeypatch.setenv("PGSERVICEFILE", str(service_file(tmp_path / "pg_service.conf", impostor)))
    monkeypatch.delenv("PGSERVICE", raising=False)
    url, opts = local_iam(bed)
    assert open_through(entry, url, opts, {}) == ("iam_user", True)
    assert impostor.accepted == 0


def token_logins(bed: Bed) -> int:
    return bed.verifier_log.read_text().count(" pg iam_user ok")


ASYNCPG_ARGS = [
    ({"ssl": False}, "'ssl' is securedb's"),
    ({"ssl": "disable"}, "'ssl' is securedb's"),
    ({"dsn": f"postgresql://{REMOTE}/app?sslmode=disable"}, "'dsn' is securedb's"),
    ({"host": "127.0.0.1"}, "'host' is securedb's"),
    ({"port": 5432}, "'port' is securedb's"),
    ({"passfile": "/dev/null"}, "'passfile' is securedb's"),
    ({"service": "evil"}, "'service' is securedb's"),
    ({"direct_tls": True}, "direct_tls=True would weaken TLS"),
    ({"krbsrvname": "postgres"}, "krbsrvname='postgres' would weaken TLS"),
    ({"sslmode": "disable"}, "unknown asyncpg argument 'sslmode'"),
]


ASYNCPG_CASES = [
    (entry, args, match)
    for entry in ("async_connect", "async_engine", "async_pool", "url")
    for args, match in ASYNCPG_ARGS
    # a URL's query holds text only
    if entry != "url" or all(isinstance(v, str) for v in args.values())
]


@pytest.mark.parametrize(("entry", "args", "match"), ASYNCPG_CASES)
def test_asyncpg_arguments(
    bed: Bed, aws_env: dict[str, str], entry: str, args: dict[str, Any], match: str
) -> None:
    """Each asyncpg argument that moves the endpoint or weakens TLS, by every asyncpg path."""
    pytest.importorskip("asyncpg")
    url = f"postgresql+asyncpg://{postgres.IAM_USER}@{REMOTE}:5432/app"
    opts = options(bed, bed.primary.port)

    async def attempt() -> None:
        if entry == "async_connect":
            await securedb.async_connect(url, **opts, connect_args=args)
        elif entry == "async_engine":
            eng = securedb.async_engine(url, **opts, connect_args=args)
            try:
                async with eng.connect():
                    pass
            finally:
                await eng.dispose()
        elif entry == "async_pool":
            async with securedb.async_pool(url, **opts, **args):
                pass
        else:
            await securedb.async_connect(f"{url}?{urlencode(args)}", **opts)

    refused_before_the_server(bed, lambda: asyncio.run(attempt()), match)
