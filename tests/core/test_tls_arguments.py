"""TLS settings and the drivers' argument merge points, exactly (no server).

These pin what `tls.py` and each adapter's ``connect_kwargs``/``check_args`` hand to the
driver: a change that weakens verify-full, drops a dead-peer default or lets a caller's
key through fails here, whatever the servers would have accepted.
"""

from __future__ import annotations

import math
import socket
import ssl
from typing import Any

import pytest

from securedb import errors, tls
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.drivers import ArgTables, check_owned, mysql, postgres

RDS = "mydb.abc123.eu-west-2.rds.amazonaws.com"
PROXY = "app.proxy-abc123.eu-west-2.rds.amazonaws.com"
CRED = Credential(user="app", password="pw-secret-tls-0")


def pg(host: str = RDS, **options: Any) -> Config:
    return Config.from_url(f"postgresql://app@{host}/app", auth="iam", **options)


def my(host: str = RDS, **options: Any) -> Config:
    return Config.from_url(f"mysql://app@{host}/app", auth="iam", **options)


# --- tls.py -----------------------------------------------------------------------------


def test_ca_file_is_the_bundle_given_else_the_bundled_one() -> None:
    assert tls.ca_file(pg()) == str(tls.RDS_BUNDLE)
    assert tls.ca_file(pg(PROXY)) == str(tls.PROXY_BUNDLE)
    assert tls.ca_file(pg(ca_bundle=str(tls.PROXY_BUNDLE))) == str(tls.PROXY_BUNDLE)
    assert tls.ca_file(pg(PROXY, ca_bundle=str(tls.RDS_BUNDLE))) == str(tls.RDS_BUNDLE)


def test_ssl_context_verifies_chain_and_name_at_tls_1_2_or_newer() -> None:
    context = tls.ssl_context(pg())
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.get_ca_certs(), "the trust store was not loaded"
    # Only the bundle's roots: not the system's, not an empty store.
    bundled = {c["serialNumber"] for c in context.get_ca_certs()}
    proxy = {c["serialNumber"] for c in tls.ssl_context(pg(PROXY)).get_ca_certs()}
    assert bundled != proxy


def test_ssl_context_is_shared_per_trust_store() -> None:
    assert tls.ssl_context(pg()) is tls.ssl_context(my())
    assert tls.ssl_context(pg()) is not tls.ssl_context(pg(PROXY))


def test_libpq_params_are_verify_full() -> None:
    assert tls.libpq_params(pg()) == {
        "sslmode": "verify-full",
        "sslrootcert": str(tls.RDS_BUNDLE),
        "ssl_min_protocol_version": "TLSv1.2",
        "gssencmode": "disable",
    }


@pytest.mark.parametrize(
    ("tunnel", "address"),
    [
        ("localhost:5433", ("127.0.0.1", 5433)),
        ("LocalHost:5433", ("127.0.0.1", 5433)),
        ("127.0.0.2:6000", ("127.0.0.2", 6000)),
        ("[::1]:5433", ("::1", 5433)),
    ],
)
def test_tunnel_sends_the_socket_to_a_numeric_address(
    tunnel: str, address: tuple[str, int]
) -> None:
    params = tls.libpq_params(pg(tunnel=tunnel))
    assert (params["hostaddr"], params["port"]) == address
    assert params["sslmode"] == "verify-full"
    assert tls.socket_address(pg(tunnel=tunnel).tunnel or ("", 0)) == address


def test_localhost_is_ipv4_loopback_whatever_the_resolver_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The certificate check is on the endpoint name; the forward listens on 127.0.0.1."""

    def getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", args[1], 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("localhost", "LOCALHOST", "LocalHost"):
        assert tls.socket_address((name, 5433)) == ("127.0.0.1", 5433)
    assert tls.socket_address(("ip6-localhost", 5433)) == ("::1", 5433)


def test_socket_address_resolves_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[Any, ...]] = []

    def getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
        asked.append((*args, kwargs))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", args[1]))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert tls.socket_address(("bastion.internal", 7000)) == ("10.9.8.7", 7000)
    assert asked == [("bastion.internal", 7000, {"type": socket.SOCK_STREAM})]


# --- check_owned ------------------------------------------------------------------------

TABLES = ArgTables(
    driver="testdriver",
    endpoint={"host": "put it in the URL"},
    tls={"sslmode": ("verify-full",), "ssl": ()},
    harmless=frozenset({"application_name"}),
)
WEAKER = (
    "would weaken TLS: securedb always verifies the certificate and host name of a server "
    "that is not on this machine (the host and the tunnel must both be loopback to relax it)"
)


def test_check_owned_refuses_endpoint_keys_with_the_hint() -> None:
    for local in (False, True):
        with pytest.raises(errors.ConfigError) as caught:
            check_owned({"host": "evil"}, local, TABLES)
        assert str(caught.value) == "driver argument 'host' is securedb's: put it in the URL"


def test_check_owned_refuses_weaker_tls_unless_local() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        check_owned({"sslmode": "require"}, False, TABLES)
    assert str(caught.value) == f"driver argument sslmode='require' {WEAKER}"
    with pytest.raises(errors.ConfigError, match="ssl=None would weaken TLS"):
        check_owned({"ssl": None}, False, TABLES)
    # A structure is not shown: PyMySQL's ssl dict may hold a client key's password.
    with pytest.raises(errors.ConfigError) as caught:
        check_owned({"ssl": {"key": "k.pem", "password": "hunter2"}}, False, TABLES)
    assert str(caught.value) == f"driver argument ssl {WEAKER}"
    check_owned({"sslmode": "disable", "ssl": None}, True, TABLES)


def test_check_owned_refuses_unknown_arguments_wherever_the_server_is() -> None:
    for local in (False, True):
        with pytest.raises(errors.ConfigError) as caught:
            check_owned({"conninfo": "hostaddr=203.0.113.5"}, local, TABLES)
        assert str(caught.value) == (
            "unknown testdriver argument 'conninfo': securedb passes on only the arguments "
            "it knows cannot move the connection or weaken its TLS: application_name, ssl, "
            "sslmode"
        )


def test_check_owned_lets_harmless_arguments_through() -> None:
    check_owned({"sslmode": "verify-full", "application_name": "web"}, False, TABLES)
    check_owned({}, False, TABLES)


def test_every_argument_is_checked_not_only_the_first() -> None:
    with pytest.raises(errors.ConfigError, match="sslmode"):
        check_owned({"application_name": "web", "sslmode": "prefer"}, False, TABLES)
    with pytest.raises(errors.ConfigError, match="'host'"):
        check_owned({"sslmode": "verify-full", "host": "x"}, False, TABLES)


# --- PostgreSQL -------------------------------------------------------------------------


def test_postgres_kwargs_exactly() -> None:
    assert postgres.connect_kwargs(pg(), CRED, {}) == {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "tcp_user_timeout": 9000,
        "host": RDS,
        "hostaddr": "",  # given, so that libpq never takes PGHOSTADDR from the environment
        "port": 5432,
        "dbname": "app",
        "user": "app",
        "password": "pw-secret-tls-0",
        "sslmode": "verify-full",
        "sslrootcert": str(tls.RDS_BUNDLE),
        "ssl_min_protocol_version": "TLSv1.2",
        "gssencmode": "disable",
    }


@pytest.mark.parametrize(("timeout", "seconds"), [(0.1, 1), (1.0, 1), (2.5, 3), (30, 30)])
def test_connect_timeout_is_whole_seconds_at_least_one(timeout: float, seconds: int) -> None:
    assert postgres.connect_kwargs(pg(connect_timeout=timeout), CRED, {})["connect_timeout"] == (
        seconds
    )
    assert mysql.connect_kwargs(my(connect_timeout=timeout), CRED, {})["connect_timeout"] == (
        seconds
    )
    assert seconds == max(1, math.ceil(timeout))


def test_postgres_caller_arguments_layer_under_securedbs() -> None:
    cfg = pg(connect_args={"application_name": "web", "keepalives_idle": 30})
    kwargs = postgres.connect_kwargs(cfg, CRED, {"application_name": "job", "connect_timeout": 9})
    assert kwargs["application_name"] == "job"  # this connection's own win
    assert kwargs["keepalives_idle"] == 30  # dead-peer defaults can be tuned
    assert kwargs["connect_timeout"] == 9
    assert kwargs["sslmode"] == "verify-full"


def test_postgres_checks_this_connections_own_arguments() -> None:
    with pytest.raises(errors.ConfigError, match="sslmode='require' would weaken TLS"):
        postgres.connect_kwargs(pg(), CRED, {"sslmode": "require"})
    with pytest.raises(errors.ConfigError, match="'hostaddr' is securedb's"):
        postgres.connect_kwargs(pg(), CRED, {"hostaddr": "10.0.0.1"})


def test_postgres_loopback_may_relax_tls_and_remote_never() -> None:
    local = Config.from_url("postgresql://app:pw@localhost:5433/app")
    kwargs = postgres.connect_kwargs(local, CRED, {"sslmode": "disable", "gssencmode": "prefer"})
    assert (kwargs["sslmode"], kwargs["gssencmode"]) == ("disable", "prefer")
    assert kwargs["sslrootcert"] == str(tls.RDS_BUNDLE)
    plain = postgres.connect_kwargs(local, CRED, {"application_name": "web"})
    assert (plain["sslmode"], plain["gssencmode"]) == ("verify-full", "disable")


def test_postgres_proxy_gets_proxy_safe_settings_only_there() -> None:
    assert postgres.connect_kwargs(pg(PROXY), CRED, {})["prepare_threshold"] is None
    assert (
        postgres.connect_kwargs(pg(PROXY), CRED, {"prepare_threshold": 5})["prepare_threshold"]
        is None
    )
    assert "prepare_threshold" not in postgres.connect_kwargs(pg(), CRED, {})
    assert postgres.connect_kwargs(pg(), CRED, {"prepare_threshold": 5})["prepare_threshold"] == 5


# --- MySQL ------------------------------------------------------------------------------


def test_mysql_kwargs_exactly() -> None:
    cfg = my()
    kwargs = mysql.connect_kwargs(cfg, CRED, {})
    assert kwargs == {
        "connect_timeout": 5,
        "host": RDS,
        "port": 3306,
        "database": "app",
        "user": "app",
        "password": "pw-secret-tls-0",
        "ssl": tls.ssl_context(cfg),
        "defer_connect": True,
    }
    assert kwargs["ssl"].verify_mode is ssl.CERT_REQUIRED
    assert kwargs["ssl"].check_hostname is True


def test_aiomysql_kwargs_exactly() -> None:
    """aiomysql's spelling comes out of the same merge point: `db`, no PyMySQL-only
    verify flags, and `address` for where the socket goes."""
    cfg = my(tunnel="localhost:3307")
    assert mysql.connect_kwargs(cfg, CRED, {"charset": "utf8"}, aio=True) == {
        "connect_timeout": 5,
        "charset": "utf8",
        "host": RDS,
        "port": 3306,
        "db": "app",
        "user": "app",
        "password": "pw-secret-tls-0",
        "ssl": tls.ssl_context(cfg),
        "address": ("127.0.0.1", 3307),
    }
    assert mysql.connect_kwargs(my(), CRED, {}, aio=True)["address"] is None
    local = Config.from_url("mysql://app:pw@127.0.0.1:3307/app")
    relaxed = {"ssl_disabled": True, "ssl_verify_cert": False, "ssl_verify_identity": False}
    kwargs = mysql.connect_kwargs(local, CRED, relaxed, aio=True)
    assert kwargs["ssl"] is None
    assert not relaxed.keys() & kwargs.keys()


def test_mysql_caller_arguments_and_checks() -> None:
    cfg = my(connect_args={"charset": "utf8mb4", "read_timeout": 10})
    kwargs = mysql.connect_kwargs(cfg, CRED, {"read_timeout": 20})
    assert (kwargs["charset"], kwargs["read_timeout"]) == ("utf8mb4", 20)
    assert kwargs["ssl"] is tls.ssl_context(cfg)
    for value in (False, True, 1, "require"):  # any value: PyMySQL would drop securedb's context
        with pytest.raises(errors.ConfigError, match=r"ssl_verify_identity=.* would weaken TLS"):
            mysql.connect_kwargs(cfg, CRED, {"ssl_verify_identity": value})
    with pytest.raises(errors.ConfigError, match="'passwd' is securedb's"):
        mysql.connect_kwargs(cfg, CRED, {"passwd": "x"})


def test_mysql_loopback_may_relax_tls_and_remote_never() -> None:
    local = Config.from_url("mysql://app:pw@127.0.0.1:3307/app")
    kwargs = mysql.connect_kwargs(local, CRED, {"ssl_disabled": True, "charset": "utf8"})
    assert kwargs["ssl_disabled"] is True
    assert kwargs["ssl"] is tls.ssl_context(local)
    assert "ssl_disabled" not in mysql.connect_kwargs(local, CRED, {"charset": "utf8"})
    assert mysql.connect_kwargs(local, CRED, {"ssl": None})["ssl"] is None
    with pytest.raises(errors.ConfigError, match="ssl_disabled=True would weaken TLS"):
        mysql.connect_kwargs(my(), CRED, {"ssl_disabled": True})


def test_mysql_opens_its_own_socket_with_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket goes to the tunnel (or the endpoint) within connect_timeout; TLS names the
    endpoint. A refusal is PyMySQL's own 2003, so classification sees what PyMySQL raises."""
    import pymysql

    calls: list[tuple[Any, ...]] = []

    def create_connection(address: Any, timeout: Any = "unset") -> Any:
        calls.append((address, timeout))
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    with pytest.raises(pymysql.err.OperationalError) as caught:
        mysql.connect(my(connect_timeout=2.5, tunnel="localhost:3307"), CRED, {})
    assert calls == [(("127.0.0.1", 3307), 2.5)]
    assert caught.value.args == (
        2003,
        "Can't connect to MySQL server on '127.0.0.1' (refused)",
    )
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    with pytest.raises(pymysql.err.OperationalError):
        mysql.connect(my(), CRED, {})
    assert calls[1] == ((RDS, 3306), 5.0)


def test_aiomysql_gets_pymysqls_tls_in_its_own_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiomysql takes ``ssl=None`` for "no TLS" (loopback only) and no PyMySQL-only keys."""
    import asyncio

    made: list[dict[str, Any]] = []

    class Recording:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        async def _connect(self) -> None:
            pass

    monkeypatch.setattr(mysql, "_async_connection_class", lambda: Recording)
    local = Config.from_url("mysql://app:pw@127.0.0.1:3307/app", tunnel="localhost:3310")
    relaxed = {
        "ssl_disabled": True,
        "ssl_verify_cert": False,
        "ssl_verify_identity": False,
    }
    asyncio.run(mysql.connect_async(local, CRED, relaxed))
    asyncio.run(mysql.connect_async(local, CRED, {"ssl_disabled": False}))
    asyncio.run(mysql.connect_async(my(), CRED, {}))
    assert made[0] == {
        "address": ("127.0.0.1", 3310),
        "connect_timeout": 5,
        "host": "127.0.0.1",
        "port": 3307,
        "db": "app",
        "user": "app",
        "password": "pw-secret-tls-0",
        "ssl": None,
    }
    assert made[1]["ssl"] is tls.ssl_context(local)
    assert "ssl_disabled" not in made[1]
    assert made[2]["address"] is None
    assert made[2]["ssl"] is tls.ssl_context(my())
    assert (made[2]["host"], made[2]["port"], made[2]["db"]) == (RDS, 3306, "app")


def test_postgres_refuses_a_service_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSERVICE", "elsewhere")
    with pytest.raises(errors.ConfigError) as caught:
        postgres.connect_kwargs(pg(), CRED, {})
    assert str(caught.value) == (
        "PGSERVICE is set in the environment: libpq would take the server from a service "
        "file instead of the URL; unset PGSERVICE for this process"
    )
    monkeypatch.setenv("PGSERVICE", "")  # libpq would look for a service named ""
    with pytest.raises(errors.ConfigError, match="unset PGSERVICE"):
        postgres.connect_kwargs(pg(), CRED, {})
    monkeypatch.delenv("PGSERVICE")
    assert postgres.connect_kwargs(pg(), CRED, {})["host"] == RDS


def test_postgres_gives_hostaddr_so_the_environment_cannot() -> None:
    """An empty hostaddr keeps libpq from reading PGHOSTADDR; a tunnel's replaces it."""
    assert postgres.connect_kwargs(pg(), CRED, {})["hostaddr"] == ""
    tunnelled = Config.from_url(f"postgresql://app@{RDS}/app", auth="iam", tunnel="127.0.0.1:9")
    assert postgres.connect_kwargs(tunnelled, CRED, {})["hostaddr"] == "127.0.0.1"


@pytest.mark.parametrize("name", ["conninfo", "dsn", "service", "servicefile"])
def test_postgres_refuses_keys_that_carry_other_keys(name: str) -> None:
    local = Config.from_url("postgresql://app:pw@localhost:5433/app")
    with pytest.raises(errors.ConfigError, match=f"'{name}' is securedb's"):
        postgres.connect_kwargs(local, CRED, {name: "hostaddr=203.0.113.5 sslmode=disable"})


def test_a_harmless_value_must_be_of_the_same_type() -> None:
    """``True == 1``, but psycopg writes ``sslsni=True`` and libpq turns SNI off for it."""
    for value in (1, "1"):
        assert postgres.connect_kwargs(pg(), CRED, {"sslsni": value})["sslsni"] == value
    with pytest.raises(errors.ConfigError, match="sslsni=True would weaken TLS"):
        postgres.connect_kwargs(pg(), CRED, {"sslsni": True})


def test_a_caller_may_tighten_tls_off_this_machine() -> None:
    kwargs = postgres.connect_kwargs(pg(), CRED, {"ssl_min_protocol_version": "TLSv1.3"})
    assert kwargs["ssl_min_protocol_version"] == "TLSv1.3"
    assert kwargs["sslmode"] == "verify-full"
