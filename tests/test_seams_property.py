"""Any driver argument is refused, or reaches the driver verifying the endpoint.

Hypothesis draws driver arguments from the drivers' own parameter names (every libpq
keyword and psycopg's own; every keyword of PyMySQL's ``Connection``) with values that
look harmless and values that are not, handed over as ``connect_args``, in the URL's
query and as a connection's own arguments, for hosts and tunnels on this machine and off
it. For each, securedb refuses it with a `ConfigError`, or what the driver makes of the
final keyword arguments verifies the certificate chain and the endpoint's name and points
at the endpoint or its tunnel. That is judged as the driver judges it, not by securedb's
tables: the conninfo psycopg would build, parsed back; PyMySQL's ``Connection`` (made, not
connected). TLS may be relaxed only where every destination is this machine.

``SECUREDB_PROPERTY_EXAMPLES`` sets the number of examples per test (default 300).
"""

from __future__ import annotations

import atexit
import dataclasses
import inspect
import ipaddress
import os
import shutil
import ssl
import tempfile
from typing import Any
from urllib.parse import urlencode

import psycopg
import pymysql
from hypothesis import HealthCheck, configuration, event, example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from securedb import errors, tls
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.drivers import mysql, postgres

EXAMPLES = int(os.environ.get("SECUREDB_PROPERTY_EXAMPLES", "300"))
CRED = Credential(user="app", password="pw-property-0")

LIBPQ_KEYWORDS = frozenset(d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults())
# Connection.connect's own keywords: psycopg keeps them out of the conninfo.
PSYCOPG_KEYWORDS = ("autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory")
PG_NAMES = sorted(LIBPQ_KEYWORDS | {"servicefile", "conninfo", "dsn", *PSYCOPG_KEYWORDS})
MYSQL_NAMES = sorted(
    name
    for name in inspect.signature(pymysql.connections.Connection.__init__).parameters
    if name != "self"
)

TEXTS = [
    *("", "1", "0", "true", "false", "True", "yes", "5432", "app"),
    *("require", "verify-full", "verify-ca", "disable", "prefer", "allow", "system"),
    *("direct", "postgres", "TLSv1", "TLSv1.2", "TLSv1.3", "sslv3"),
    *("127.0.0.2", "evil.example.com", "/tmp", "/var/run/postgresql,evil.example.com"),
    *("hostaddr=127.0.0.2 sslmode=disable", "host=evil.example.com", "service=evil"),
    "x' hostaddr='127.0.0.2",
]
_UNVERIFIED = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE
OBJECTS = [
    *(True, False, 1, 0, 1.0, None, 5),
    {"check_hostname": False},
    {"ca": "/etc/ssl/certs/ca-certificates.crt"},
    _UNVERIFIED,
]

LOCAL_HOSTS = ["localhost", "127.0.0.1", "127.0.0.2", "[::1]", "/tmp", "/var/run/postgresql"]
REMOTE_HOSTS = [
    "mydb.abc123.eu-west-2.rds.amazonaws.com",
    "app.proxy-abc123.eu-west-2.rds.amazonaws.com",
    "evil.example.com",
    "evil.example.com.",
    "localhost.",
    "localhost.example.com",
    "127.0.0.1.example.com",
    "10.0.0.5",
    "[2001:db8::5]",
]
HOST_LISTS = ["localhost,evil.example.com", "/var/run/postgresql,evil.example.com"]
TUNNELS = [
    *(None, "localhost:6543", "127.0.0.1:6543", "127.0.0.2:6543", "[::1]:6543"),
    *("10.1.2.3:5432", "203.0.113.5:5432", "[2001:db8::1]:5432"),
]

hosts = st.sampled_from(LOCAL_HOSTS + REMOTE_HOSTS + HOST_LISTS)
tunnels = st.sampled_from(TUNNELS)
values = st.sampled_from(TEXTS + OBJECTS)


def arguments(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(names), values, max_size=3)


def queries(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(names), st.sampled_from(TEXTS), max_size=3)


def examples(max_examples: int = EXAMPLES) -> Any:
    """No example database; the example count from the environment."""
    return settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def keep_hypothesis_home_out_of_the_checkout() -> None:
    """Hypothesis caches what it finds in the code, while tests are collected, in its home
    (``.hypothesis`` in the working directory): here, a temporary directory instead.

    Examples are kept nowhere (``database=None``). HYPOTHESIS_STORAGE_DIRECTORY, if set,
    is left to decide.
    """
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return
    home = tempfile.mkdtemp(prefix="securedb-hypothesis-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    configuration.set_hypothesis_home_dir(home)


keep_hypothesis_home_out_of_the_checkout()


# --- the test's own judgment of places ---------------------------------------------------


def on_this_machine(host: str) -> bool:
    """Loopback, or a Unix-socket directory: decided here, not by securedb."""
    if host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tunnel_address(tunnel: str | None) -> tuple[str, str] | None:
    """The address and port a tunnel's socket goes to (``localhost`` is IPv4 loopback)."""
    if tunnel is None:
        return None
    host, port = tunnel.rsplit(":", 1)
    host = host.strip("[]")
    return ("127.0.0.1" if host == "localhost" else host), port


def local(host: str, tunnel: str | None) -> bool:
    """Every place the socket can go is this machine: each host, and the tunnel."""
    places = host.split(",") + ([tunnel_address(tunnel)[0]] if tunnel else [])  # type: ignore[index]
    return all(on_this_machine(place) for place in places)


def config(
    engine: str, host: str, tunnel: str | None, in_query: bool, query: dict[str, str], given: Any
) -> Config:
    """The Config a caller would make: URL (with `query`), options, a socket directory.

    A Unix-socket directory cannot be written in a URL: it replaces the host after.
    """
    port = 5432 if engine == "postgresql" else 3306
    query = dict(query)
    options: dict[str, Any] = {}
    if tunnel is not None:
        (query if in_query else options)["tunnel"] = tunnel
    in_url = "localhost" if host.startswith("/") else host
    url = f"{engine}://app@{in_url}:{port}/app" + (f"?{urlencode(query)}" if query else "")
    cfg = Config.from_url(url, auth="iam", region="eu-west-2", connect_args=given, **options)
    return dataclasses.replace(cfg, host=host) if host.startswith("/") else cfg


def bundle(host: str) -> str:
    return str(tls.PROXY_BUNDLE if ".proxy-" in host else tls.RDS_BUNDLE)


# --- PostgreSQL ---------------------------------------------------------------------------


def conninfo_psycopg_makes(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The parameters libpq gets from ``psycopg.Connection.connect(**kwargs)``."""
    params = {k: v for k, v in kwargs.items() if k not in PSYCOPG_KEYWORDS}
    conninfo = params.pop("conninfo", "")
    return conninfo_to_dict(make_conninfo(conninfo, **params))


def check_postgres(host: str, tunnel: str | None, kwargs: dict[str, Any]) -> None:
    try:
        params = conninfo_psycopg_makes(kwargs)
    except psycopg.ProgrammingError:
        event("refused by psycopg before connecting")
        return
    endpoint = host.strip("[]")
    forward = tunnel_address(tunnel)
    where = {k: params.get(k) for k in ("host", "hostaddr", "port", "sslmode", "service")}
    # Where the socket goes: the endpoint (resolved by psycopg), or the given hostaddr.
    # An absent hostaddr is not "none": libpq would take PGHOSTADDR from the environment.
    assert params.get("host") == endpoint, f"not the endpoint {endpoint!r}: {where}"
    assert "hostaddr" in params, f"no hostaddr: PGHOSTADDR would decide: {where}"
    assert params["hostaddr"] in ("", forward[0] if forward else ""), f"elsewhere: {where}"
    assert params.get("port") == (forward[1] if forward else "5432"), where
    assert "service" not in params, where
    assert "servicefile" not in params, where
    assert set(params) <= LIBPQ_KEYWORDS, set(params) - LIBPQ_KEYWORDS
    assert (params["user"], params["password"]) == (CRED.user, CRED.password)
    if local(host, tunnel):
        relaxed = params.get("sslmode") != "verify-full" or params.get("gssencmode") != "disable"
        event("accepted: on this machine, TLS relaxed" if relaxed else "accepted: verify-full")
        return
    tls_params = {
        k: params.get(k)
        for k in ("sslmode", "sslrootcert", "gssencmode", "ssl_min_protocol_version")
    }
    off = f"off this machine ({host!r}, tunnel {tunnel!r}): {tls_params}"
    assert params.get("sslmode") == "verify-full", off
    assert params.get("sslrootcert") == bundle(host), off
    assert params.get("gssencmode") == "disable", off  # GSS encryption instead of TLS
    assert params.get("ssl_min_protocol_version") in ("TLSv1.2", "TLSv1.3"), off
    assert "sslkeylogfile" not in params, off
    event("accepted: verify-full off this machine")


@given(
    host=hosts,
    tunnel=tunnels,
    in_query=st.booleans(),
    query=queries(PG_NAMES),
    given_args=arguments(PG_NAMES),
    own=arguments(PG_NAMES),
)
@example(  # the reviewed attack
    host="localhost",
    tunnel=None,
    in_query=False,
    query={"sslmode": "disable", "conninfo": "hostaddr=127.0.0.2"},
    given_args={},
    own={},
)
@example(  # relaxed TLS through a tunnel to another machine
    host="localhost",
    tunnel="203.0.113.5:5432",
    in_query=True,
    query={"sslmode": "disable"},
    given_args={},
    own={},
)
@example(  # a host list after a socket directory
    host="/var/run/postgresql,evil.example.com",
    tunnel=None,
    in_query=False,
    query={},
    given_args={"sslmode": "disable"},
    own={},
)
@example(host="localhost", tunnel=None, in_query=False, query={}, given_args={}, own={})
@examples()
def test_postgres_arguments_are_refused_or_verify_the_endpoint(
    host: str,
    tunnel: str | None,
    in_query: bool,
    query: dict[str, str],
    given_args: dict[str, Any],
    own: dict[str, Any],
) -> None:
    try:
        cfg = config("postgresql", host, tunnel, in_query, query, given_args)
        kwargs = postgres.connect_kwargs(cfg, CRED, own)
    except errors.ConfigError:
        event("refused by securedb")
        return
    check_postgres(host, tunnel, kwargs)


# --- PyMySQL ------------------------------------------------------------------------------


def check_mysql(cfg: Config, host: str, tunnel: str | None, kwargs: dict[str, Any]) -> None:
    try:
        conn = pymysql.connections.Connection(**kwargs, defer_connect=True)
    except Exception as exc:  # made before any socket (securedb's connect does the same)
        event(f"refused by PyMySQL before connecting ({type(exc).__name__})")
        return
    assert conn.host == host.strip("[]"), conn.host
    assert conn.port == 3306
    assert conn.unix_socket is None
    assert (conn.user, conn.password) == (CRED.user, CRED.password.encode())
    if local(host, tunnel):
        relaxed = not conn.ssl or conn.ctx is not tls.ssl_context(cfg)
        event("accepted: on this machine, TLS relaxed" if relaxed else "accepted: verify-full")
        return
    assert conn.ssl, f"no TLS off this machine ({host!r}, tunnel {tunnel!r}): {kwargs}"
    assert getattr(conn, "_ssl_required", True), "TLS only if the server offers it"
    assert conn.ctx is tls.ssl_context(cfg), f"PyMySQL made its own SSLContext: {kwargs}"
    assert conn.ctx.verify_mode == ssl.CERT_REQUIRED
    assert conn.ctx.check_hostname is True
    event("accepted: verify-full off this machine")


@given(
    host=hosts,
    tunnel=tunnels,
    in_query=st.booleans(),
    query=queries(MYSQL_NAMES),
    given_args=arguments(MYSQL_NAMES),
    own=arguments(MYSQL_NAMES),
)
@example(  # values that read as "verify"
    host="evil.example.com",
    tunnel=None,
    in_query=False,
    query={},
    given_args={"ssl_verify_cert": 1},
    own={"ssl_verify_identity": True},
)
@example(  # relaxed TLS through a tunnel to another machine
    host="127.0.0.1",
    tunnel="10.1.2.3:5432",
    in_query=False,
    query={},
    given_args={"ssl_disabled": True},
    own={},
)
@example(host="localhost", tunnel=None, in_query=False, query={}, given_args={}, own={})
@examples()
def test_mysql_arguments_are_refused_or_verify_the_endpoint(
    host: str,
    tunnel: str | None,
    in_query: bool,
    query: dict[str, str],
    given_args: dict[str, Any],
    own: dict[str, Any],
) -> None:
    try:
        cfg = config("mysql", host, tunnel, in_query, query, given_args)
        kwargs = mysql.connect_kwargs(cfg, CRED, own)
    except errors.ConfigError:
        event("refused by securedb")
        return
    check_mysql(cfg, host, tunnel, kwargs)


def test_the_names_are_the_drivers_own() -> None:
    """The strategies draw from what the installed drivers take, not from securedb."""
    assert {"sslmode", "hostaddr", "sslnegotiation", "sslkeylogfile"} <= set(PG_NAMES)
    assert {"ssl", "ssl_verify_cert", "unix_socket", "read_default_file"} <= set(MYSQL_NAMES)
    assert not set(MYSQL_NAMES) & {"self", "kwargs"}
