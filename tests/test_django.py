"""The Django backends against the bed: IAM, a secret, a tunnel, the test runner's settings
copies and database switch, Django's pool, MySQL on PyMySQL, and per-thread wrappers."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import threading
from typing import Any

import boto3
import pytest

from bed import certs, mariadb, postgres
from bed.bed import Bed
from securedb import _state
from securedb.config import Config
from securedb.credentials import identity
from securedb.errors import ConfigError
from tests.frameworks.django_suite import database_rights
from tests.test_registry import caches_of, refreshers

django = pytest.importorskip("django")

pytestmark = pytest.mark.bed

ENGINES = {
    "postgresql": "securedb.contrib.django.postgresql",
    "mysql": "securedb.contrib.django.mysql",
}


@pytest.fixture(scope="module")
def settings() -> Any:
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure(DATABASES={}, USE_TZ=True, INSTALLED_APPS=[])
        django.setup()
    return django_settings


def open_alias(alias: str, database: dict[str, Any]) -> Any:
    """This thread's wrapper for `database` under `alias`, settings completed as Django does.

    It is ``connections[alias]``, the wrapper Django's own code (the test runner's
    migrate, for one) uses in this thread.
    """
    from django.db import connections

    connections.settings[alias] = connections.configure_settings({"default": database})["default"]
    with contextlib.suppress(AttributeError):
        del connections[alias]  # a wrapper an earlier test made with other settings
    return connections[alias]


def iam_database(bed: Bed, engine: str, **options: Any) -> dict[str, Any]:
    """Settings for the bed's iam_user on loopback, IAM tokens, the bed's CA."""
    if engine == "postgresql":
        server, user = bed.primary, postgres.IAM_USER
    else:
        server, user = bed.mariadb, mariadb.IAM_USER
    return {
        "ENGINE": ENGINES[engine],
        "NAME": "app",
        "USER": user,
        "HOST": "localhost",
        "PORT": server.port,
        "OPTIONS": {"securedb": {"auth": "iam", "ca_bundle": str(bed.pki.ca)}, **options},
    }


def facts(connection: Any) -> tuple[str, bool]:
    """The user and whether TLS is on, from the server's side."""
    return current(connection)[1:]  # type: ignore[return-value]


def current(connection: Any) -> tuple[str | None, str, bool]:
    """The database, the user and whether TLS is on, from the server's side."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT current_database(), current_user, ssl FROM pg_stat_ssl "
                "WHERE pid = pg_backend_pid()"
            )
            database, user, ssl_on = cursor.fetchone()
            return database, user, ssl_on
        cursor.execute("SELECT DATABASE(), SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        database, user = cursor.fetchone()
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        _, version = cursor.fetchone()
        return database, user, version.startswith("TLSv1.")


def current_and_close(alias: str) -> tuple[str | None, str, bool]:
    """`current` for this thread's wrapper of `alias`, closed after."""
    from django.db import connections

    conn = connections[alias]
    try:
        return current(conn)
    finally:
        conn.close()


def token_logins(bed: Bed, group: str) -> int:
    return bed.verifier_log.read_text().count(f" {group} iam_user ok")


def test_iam_through_a_tunnel(settings: Any, bed: Bed, aws_env: dict[str, str]) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    conn = open_alias(
        "iam",
        {
            "ENGINE": "securedb.contrib.django.postgresql",
            "NAME": "app",
            "USER": "iam_user",
            "HOST": certs.PG_INSTANCE,
            "PORT": 5432,
            "OPTIONS": {
                "securedb": {
                    "auth": "iam",
                    "ca_bundle": str(bed.pki.ca),
                    "tunnel": f"127.0.0.1:{fwd.port}",
                }
            },
        },
    )
    try:
        assert facts(conn) == ("iam_user", True)
        conn.close()
        assert facts(conn) == ("iam_user", True)  # a new connection, the cached token
        assert fwd.accepted == 2
    finally:
        conn.close()


def test_mysql_iam_through_a_tunnel(settings: Any, bed: Bed, aws_env: dict[str, str]) -> None:
    """PyMySQL under Django's MySQL backend: the token over TLS verified for the RDS name."""
    fwd = bed.forwarder(("127.0.0.1", bed.mariadb.port))
    conn = open_alias(
        "mysql_iam",
        {
            "ENGINE": "securedb.contrib.django.mysql",
            "NAME": "app",
            "USER": mariadb.IAM_USER,
            "HOST": certs.MYSQL_INSTANCE,
            "PORT": 3306,
            "OPTIONS": {
                "securedb": {
                    "auth": "iam",
                    "ca_bundle": str(bed.pki.ca),
                    "tunnel": f"127.0.0.1:{fwd.port}",
                }
            },
        },
    )
    before = token_logins(bed, "mysql")
    try:
        assert current(conn) == ("app", "iam_user", True)
        conn.close()
        assert current(conn) == ("app", "iam_user", True)
        assert fwd.accepted == 2
        assert token_logins(bed, "mysql") == before + 2
    finally:
        conn.close()


def test_rds_managed_secret(settings: Any, bed: Bed, aws_env: dict[str, str]) -> None:
    boto3.client("secretsmanager").create_secret(
        Name="rds/django",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": "localhost",
                "port": bed.primary.port,
                "dbname": "app",
                "username": postgres.APP_USER,
                "password": postgres.APP_PASSWORD,
            }
        ),
    )
    conn = open_alias(
        "secret",
        {
            "ENGINE": "securedb.contrib.django.postgresql",
            "NAME": "app",
            "OPTIONS": {"securedb": {"secret_id": "rds/django", "ca_bundle": str(bed.pki.ca)}},
        },
    )
    try:
        assert facts(conn) == ("app_user", True)
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"auth": "iam"}, "auth='iam'"),
        ({"secret_id": "prod/app"}, "auth='secret'"),
        ({"auth": "secret", "secret_id": "prod/app"}, "auth='secret'"),
    ],
    ids=["iam", "secret-id", "auth-secret"],
)
def test_a_password_with_a_token_or_a_secret_is_refused(
    settings: Any, engine: str, options: dict[str, Any], said: str
) -> None:
    """As a password in the URL with auth='iam' is: which credential is meant?"""
    conn = open_alias(
        f"password_{engine}",
        {
            "ENGINE": ENGINES[engine],
            "NAME": "app",
            "USER": "iam_user",
            "PASSWORD": "not-this-one",
            "HOST": "127.0.0.1",
            "PORT": 9,  # nothing is sent anywhere: the settings are refused first
            "OPTIONS": {"securedb": options},
        },
    )
    try:
        with pytest.raises(ConfigError) as refused:
            conn.ensure_connection()
    finally:
        conn.close()
    message = str(refused.value)
    assert message.startswith(f"PASSWORD is set but OPTIONS['securedb'] uses {said}, whose ")
    assert "remove PASSWORD, or use auth='password'" in message
    assert "not-this-one" not in message


# What Django's maintenance connection (NAME=None) is connected to.
MAINTENANCE = {"postgresql": ("current_database", "postgres"), "mysql": ("DATABASE", None)}


@pytest.mark.parametrize(
    ("engine", "pool"), [("postgresql", False), ("postgresql", True), ("mysql", False)]
)
def test_the_test_runner_gets_its_test_database(
    settings: Any, bed: Bed, aws_env: dict[str, str], engine: str, pool: bool
) -> None:
    """Django's test runner: a settings copy with NAME=None, then NAME switched in place.

    securedb's options come with the copy, and every connection (pooled or not, in
    this thread or another) goes to the database that NAME names at that moment.
    """
    alias = f"runner_{engine}_{'pool' if pool else 'plain'}"
    test_name = f"test_securedb_{alias}"
    pool_options = {"pool": {"min_size": 0, "max_size": 2}} if pool else {}
    database = iam_database(bed, engine, **pool_options)
    database["TEST"] = {"NAME": test_name, "CHARSET": "utf8mb4" if engine == "mysql" else None}
    conn = open_alias(alias, database)
    assert current(conn) == ("app", "iam_user", True)  # and Django's pool is made for "app"
    conn.close()
    function, maintenance_db = MAINTENANCE[engine]
    with conn._nodb_cursor() as cursor:  # the copy Django makes for maintenance work
        cursor.execute(f"SELECT {function}()")
        assert cursor.fetchone()[0] == maintenance_db
    with database_rights(bed):
        conn.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            assert current(conn) == (test_name, "iam_user", True)
            with concurrent.futures.ThreadPoolExecutor(1) as other:  # another thread's wrapper
                assert other.submit(current_and_close, alias).result(30)[0] == test_name
        finally:
            conn.creation.destroy_test_db("app", verbosity=0)
            if pool:
                conn.close_pool()


def test_django_pool_opens_through_securedb(
    settings: Any, bed: Bed, aws_env: dict[str, str]
) -> None:
    """OPTIONS["pool"]: every pooled connection logs in with a token, verify-full TLS."""
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    options = {"auth": "iam", "ca_bundle": str(bed.pki.ca), "tunnel": f"127.0.0.1:{fwd.port}"}
    conn = open_alias(
        "pooled",
        {
            "ENGINE": "securedb.contrib.django.postgresql",
            "NAME": "app",
            "USER": postgres.IAM_USER,
            "HOST": certs.PG_INSTANCE,
            "PORT": 5432,
            "OPTIONS": {"securedb": options, "pool": {"min_size": 3, "max_size": 3}},
        },
    )
    before = token_logins(bed, "pg")
    try:
        conn.pool.open(wait=True, timeout=30)  # min_size connections, by the pool's workers
        assert facts(conn) == ("iam_user", True)  # one of them
        assert fwd.accepted == 3
        assert token_logins(bed, "pg") == before + 3
        params = conn.connection.info.get_parameters()
        assert (params["sslmode"], params["host"]) == ("verify-full", certs.PG_INSTANCE)
        assert conn.connection._pool is conn.pool
        cfg = Config.from_url(
            f"postgresql://{postgres.IAM_USER}@{certs.PG_INSTANCE}:5432", **options
        )
        assert caches_of(identity(cfg)) == 1  # the wrapper's and the pool's: one cache
    finally:
        conn.close()
        conn.close_pool()


def test_per_thread_wrappers_share_one_cache(
    settings: Any, bed: Bed, aws_env: dict[str, str]
) -> None:
    """Django makes a wrapper per thread: 8 of them, one credential cache, one refresher."""
    from django.db import connections

    database = iam_database(bed, "postgresql")
    open_alias("threads", database)
    cfg = Config.from_url(
        f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}",
        auth="iam",
        ca_bundle=str(bed.pki.ca),
    )
    before = set(threading.enumerate())
    meeting = threading.Barrier(8)

    def work() -> tuple[Any, Any, tuple[str, bool]]:
        conn = connections["threads"]
        meeting.wait(timeout=30)  # all 8 threads at once: 8 wrappers
        try:
            return conn, conn.securedb.connector(conn.settings_dict).cache, facts(conn)
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [f.result(60) for f in [pool.submit(work) for _ in range(8)]]
    assert len({id(wrapper) for wrapper, _, _ in results}) == 8
    assert {f for _, _, f in results} == {("iam_user", True)}
    assert len({id(cache) for _, cache, _ in results}) == 1
    assert caches_of(identity(cfg)) == 1
    assert len(refreshers(before, cfg)) == 1
    assert _state.registry.entries[identity(cfg)][1] == 8  # one reference per wrapper
