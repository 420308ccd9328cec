"""Config parsing and validation: good inputs, and a table of bad ones (no server)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from securedb import errors
from securedb.config import Config, is_loopback, region_from_host
from securedb.connector import Connector

RDS = "mydb.abc123.eu-west-2.rds.amazonaws.com"


def test_iam_url() -> None:
    cfg = Config.from_url(f"postgresql://app@{RDS}/app", auth="iam")
    assert (cfg.engine, cfg.host, cfg.port, cfg.user, cfg.dbname) == (
        "postgresql",
        RDS,
        5432,
        "app",
        "app",
    )
    assert cfg.iam_token_ttl == 900
    assert cfg.connect_timeout == 5.0


@pytest.mark.parametrize(
    ("url", "engine", "port"),
    [
        ("postgres://u@h/db", "postgresql", 5432),
        ("postgresql+psycopg://u@h:6432/db", "postgresql", 6432),
        ("mysql://u@h/db", "mysql", 3306),
        ("mysql+pymysql://u@h:3307/db", "mysql", 3307),
        ("mariadb://u@h/db", "mysql", 3306),
    ],
)
def test_schemes(url: str, engine: str, port: int) -> None:
    cfg = Config.from_url(url, auth="iam")
    assert (cfg.engine, cfg.port) == (engine, port)


def test_auth_inferred() -> None:
    assert Config.from_url("postgresql://u:pw@localhost/db").auth == "password"
    assert Config.from_url("postgresql://u@h/db", secret_id="s").auth == "secret"
    assert Config.from_url(secret_id="rds/app").auth == "secret"


def test_password_is_masked_and_unquoted() -> None:
    cfg = Config.from_url("postgresql://u:p%40ss%2Fword@localhost/db")
    assert cfg.password == "p@ss/word"
    assert "p@ss" not in repr(cfg)
    assert "password=***" in repr(cfg)


def test_url_query_options_and_driver_args() -> None:
    cfg = Config.from_url(f"postgresql://u@{RDS}/db?auth=iam&region=eu-west-2&application_name=web")
    assert cfg.region == "eu-west-2"
    assert cfg.connect_args == {"application_name": "web"}


def test_tunnel_forms() -> None:
    assert Config.from_url(
        f"postgresql://u@{RDS}/db", auth="iam", tunnel="localhost:5433"
    ).tunnel == ("localhost", 5433)
    assert Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", tunnel="[::1]:5433").tunnel == (
        "::1",
        5433,
    )


def test_weakened_tls_allowed_for_loopback_only() -> None:
    local = Config.from_url("postgresql://u:pw@127.0.0.1/db", connect_args={"sslmode": "disable"})
    assert local.connect_args == {"sslmode": "disable"}
    made("postgresql://u:pw@127.0.0.1/db", connect_args={"sslmode": "disable"})
    with pytest.raises(errors.ConfigError, match="weaken TLS"):
        made(f"postgresql://u@{RDS}/db", auth="iam", connect_args={"sslmode": "disable"})


def test_config_is_a_hashable_value() -> None:
    def make() -> Config:
        return Config.from_url(
            f"postgresql://u@{RDS}/db?application_name=web", auth="iam", tunnel="[::1]:5433"
        )

    assert make() == make()
    assert hash(make()) == hash(make())
    assert len({make() for _ in range(10)}) == 1
    with pytest.raises(TypeError):
        make().connect_args["sslmode"] = "disable"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        make().host = "elsewhere"  # type: ignore[misc]
    assert make().tunnel == ("::1", 5433)
    other = Config.from_url("postgresql://u:one@localhost/db")
    assert other != Config.from_url("postgresql://u:two@localhost/db")


def test_from_env(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    cfg = Config.from_env(
        {
            "SECUREDB_URL": f"mysql://app@{RDS}/app",
            "SECUREDB_AUTH": "iam",
            "SECUREDB_REGION": "eu-west-2",
            "SECUREDB_CA_BUNDLE": str(ca),
            "SECUREDB_TUNNEL": "127.0.0.1:3307",
            "SECUREDB_IAM_TOKEN_TTL": "600",
            "SECUREDB_REFRESH": "lazy",
            "SECUREDB_CONNECT_TIMEOUT": "2.5",
        }
    )
    assert (cfg.engine, cfg.auth, cfg.region, cfg.ca_bundle) == (
        "mysql",
        "iam",
        "eu-west-2",
        str(ca),
    )
    assert (cfg.tunnel, cfg.iam_token_ttl, cfg.refresh, cfg.connect_timeout) == (
        ("127.0.0.1", 3307),
        600,
        "lazy",
        2.5,
    )
    assert Config.from_env({"SECUREDB_SECRET_ID": "rds/app"}).secret_id == "rds/app"


def test_lazy_refresh_on_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert Config.from_url("postgresql://u@h/db", auth="iam").refresh == "background"
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "handler")
    assert Config.from_url("postgresql://u@h/db", auth="iam").refresh == "lazy"


def test_secret_fields_fill_the_endpoint() -> None:
    cfg = Config.from_url(secret_id="rds/app").with_secret_fields(
        {"engine": "aurora-postgresql", "host": RDS, "port": "5433", "dbname": "app"}
    )
    assert (cfg.engine, cfg.host, cfg.port, cfg.dbname) == ("postgresql", RDS, 5433, "app")
    explicit = Config.from_url("mysql://u@other.example.com/x", secret_id="s")
    filled = explicit.with_secret_fields({"engine": "postgres", "host": RDS, "port": 1})
    assert (filled.engine, filled.host, filled.port) == ("mysql", "other.example.com", 3306)


@pytest.mark.parametrize(
    ("host", "region"),
    [
        (RDS, "eu-west-2"),
        ("mydb.cluster-ro-abc.us-gov-west-1.rds.amazonaws.com", "us-gov-west-1"),
        ("db.abc.cn-north-1.rds.amazonaws.com.cn", "cn-north-1"),
        ("myproxy.proxy-abc.ap-southeast-2.rds.amazonaws.com", "ap-southeast-2"),
        ("db.example.com", None),
        ("localhost", None),
    ],
)
def test_region_from_host(host: str, region: str | None) -> None:
    assert region_from_host(host) == region


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("/var/run/postgresql", True),
        ("/var/run/postgresql,db.example.com", False),  # libpq would try both
        ("localhost,db.example.com", False),
        ("10.0.0.1", False),
        (RDS, False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("url", "tunnel", "local"),
    [
        ("postgresql://u:pw@localhost/db", None, True),
        ("postgresql://u:pw@localhost/db", "127.0.0.1:5433", True),
        ("postgresql://u:pw@localhost/db", "[::1]:5433", True),
        ("postgresql://u:pw@localhost/db", "localhost:5433", True),
        # The name TLS would check is local, but the socket goes elsewhere.
        ("postgresql://u:pw@localhost/db", "203.0.113.5:5432", False),
        ("postgresql://u:pw@localhost/db", "bastion.internal:5432", False),
        ("mysql://u:pw@127.0.0.1/db", "203.0.113.5:3306", False),
        (f"postgresql://u:pw@{RDS}/db", "127.0.0.1:5433", False),
    ],
)
def test_is_local_looks_at_every_destination(url: str, tunnel: str | None, local: bool) -> None:
    assert Config.from_url(url, tunnel=tunnel).is_local is local


def test_proxy_endpoint_detected() -> None:
    proxy = "myproxy.proxy-abc123.us-east-1.rds.amazonaws.com"
    assert Config.from_url(f"postgresql://u@{proxy}/db", auth="iam").is_proxy
    assert not Config.from_url(f"postgresql://u@{RDS}/db", auth="iam").is_proxy


def _env(**env: str) -> Any:
    return lambda: Config.from_env(env)


def made(url: str | None = None, **options: Any) -> None:
    """A connector for these arguments, made and closed: where driver arguments are judged."""
    Connector(Config.from_url(url, **options)).close()


BAD: list[tuple[str, Any, str]] = [
    (
        "host list behind a socket directory",
        lambda: Config(
            auth="password",
            engine="postgresql",
            host="/var/run/postgresql,evil.example.com",
            user="u",
            password="hunter2",
            connect_args={"sslmode": "disable"},
        ),
        "securedb takes no host lists",
    ),
    (
        "host list in a URL",
        lambda: made("postgresql://u:hunter2@localhost,evil.example.com/db"),
        "bad",
    ),
    (
        "relaxed TLS through a remote tunnel",
        lambda: made("postgresql://u:hunter2@localhost/db?sslmode=disable&tunnel=203.0.113.5:5432"),
        "sslmode='disable' would weaken TLS",
    ),
    (
        "PyMySQL TLS off through a remote tunnel",
        lambda: made("mysql://u:hunter2@127.0.0.1/db?ssl_disabled=1", tunnel="203.0.113.5:3306"),
        "ssl_disabled='1' would weaken TLS",
    ),
    (
        "conninfo under a local name",
        lambda: made(
            "postgresql://u:hunter2@localhost/db?sslmode=disable&conninfo=hostaddr%3D203.0.113.5"
        ),
        "'conninfo' is securedb's: pass its parameters one by one",
    ),
    (
        "connect_args not a dict, with a URL query",
        lambda: made("postgresql://u:hunter2@localhost/db?application_name=x", connect_args="x"),
        "connect_args must be a dict",
    ),
    ("no url, no secret", lambda: made(auth="iam"), "no database URL"),
    ("not a string", lambda: made(42, auth="iam"), "must be a string"),
    ("unknown scheme", lambda: made("sqlite:///x.db", auth="iam"), "scheme"),
    ("http scheme", lambda: made("http://u@h/db", auth="iam"), "scheme"),
    (
        "psycopg2 driver",
        lambda: made("postgresql+psycopg2://u@h/db", auth="iam"),
        "scheme",
    ),
    ("bad port", lambda: made("postgresql://u@h:99999/db", auth="iam"), "port"),
    ("port not a number", lambda: made("postgresql://u@h:abc/db", auth="iam"), "port"),
    ("no host", lambda: made("postgresql:///db", auth="iam"), "no host"),
    ("no auth at all", lambda: made("postgresql://u@h/db"), "auth='iam'"),
    (
        "unknown auth",
        lambda: made("postgresql://u@h/db", auth="kerberos"),
        "bad value for auth",
    ),
    ("iam without user", lambda: made("postgresql://h/db", auth="iam"), "user"),
    (
        "iam with password",
        lambda: made("postgresql://u:hunter2-pw@h/db", auth="iam"),
        "has a password",
    ),
    (
        "secret without id",
        lambda: made("postgresql://u@h/db", auth="secret"),
        "secret_id",
    ),
    (
        "password without password",
        lambda: made("postgresql://u@h/db", auth="password"),
        "needs a password",
    ),
    (
        "secret_id with iam",
        lambda: made("postgresql://u@h/db", auth="iam", secret_id="s"),
        "drop one",
    ),
    (
        "empty secret_id",
        lambda: made("postgresql://u@h/db", auth="secret", secret_id=""),
        "secret_id",
    ),
    (
        "blank region",
        lambda: made("postgresql://u@h/db", auth="iam", region=" "),
        "region",
    ),
    (
        "ttl too long",
        lambda: made("postgresql://u@h/db", auth="iam", iam_token_ttl=901),
        "between 1 and 900",
    ),
    (
        "ttl zero",
        lambda: made("postgresql://u@h/db", auth="iam", iam_token_ttl=0),
        "iam_token_ttl",
    ),
    (
        "ttl not a number",
        lambda: made("postgresql://u@h/db", auth="iam", iam_token_ttl="soon"),
        "expected a number",
    ),
    (
        "ttl a bool",
        lambda: made("postgresql://u@h/db", auth="iam", iam_token_ttl=True),
        "expected a number",
    ),
    ("secret_ttl negative", lambda: made(secret_id="s", secret_ttl=-1), "secret_ttl"),
    (
        "connect_timeout zero",
        lambda: made("postgresql://u@h/db", auth="iam", connect_timeout=0),
        "connect_timeout",
    ),
    (
        "refresh unknown",
        lambda: made("postgresql://u@h/db", auth="iam", refresh="eager"),
        "'background', 'lazy'",
    ),
    (
        "missing CA file",
        lambda: made("postgresql://u@h/db", auth="iam", ca_bundle="/nonexistent/ca.pem"),
        "not a file",
    ),
    (
        "CA file without a certificate",
        lambda: made("postgresql://u@h/db", auth="iam", ca_bundle=errors.__file__),
        "no PEM certificate",
    ),
    (
        "tunnel without port",
        lambda: made("postgresql://u@h/db", auth="iam", tunnel="localhost"),
        "host:port",
    ),
    (
        "tunnel bad port",
        lambda: made("postgresql://u@h/db", auth="iam", tunnel="localhost:0"),
        "tunnel port",
    ),
    (
        "tunnel a number",
        lambda: made("postgresql://u@h/db", auth="iam", tunnel=5433),
        "tunnel",
    ),
    (
        "unknown option",
        lambda: made("postgresql://u@h/db", auth="iam", iam_token_tll=60),
        "unknown option",
    ),
    (
        "sslmode require",
        lambda: made(f"postgresql://u@{RDS}/db", auth="iam", connect_args={"sslmode": "require"}),
        "weaken TLS",
    ),
    (
        "sslmode in URL",
        lambda: made(f"postgresql://u@{RDS}/db?sslmode=prefer", auth="iam"),
        "weaken TLS",
    ),
    (
        "old TLS",
        lambda: made(
            f"postgresql://u@{RDS}/db",
            auth="iam",
            connect_args={"ssl_min_protocol_version": "TLSv1"},
        ),
        "weaken TLS",
    ),
    (
        "pymysql ssl_disabled",
        lambda: made(f"mysql://u@{RDS}/db", auth="iam", connect_args={"ssl_disabled": True}),
        "weaken TLS",
    ),
    (
        "pymysql no verify",
        lambda: made(f"mysql://u@{RDS}/db", auth="iam", connect_args={"ssl_verify_cert": False}),
        "weaken TLS",
    ),
    (
        "check_hostname off",
        lambda: made(f"mysql://u@{RDS}/db", auth="iam", connect_args={"check_hostname": False}),
        "unknown PyMySQL argument 'check_hostname'",
    ),
    (
        "own ssl dict",
        lambda: made(f"mysql://u@{RDS}/db", auth="iam", connect_args={"ssl": {"ca": "x"}}),
        "weaken TLS",
    ),
    (
        "weakened through tunnel",
        lambda: made(
            f"postgresql://u@{RDS}/db",
            auth="iam",
            tunnel="127.0.0.1:5433",
            connect_args={"sslmode": "disable"},
        ),
        "weaken TLS",
    ),
    (
        "password in connect_args",
        lambda: made("postgresql://u@h/db", auth="iam", connect_args={"password": "x"}),
        "'password' is securedb's",
    ),
    (
        "sslrootcert in connect_args",
        lambda: made("postgresql://u@h/db", auth="iam", connect_args={"sslrootcert": "/x"}),
        "ca_bundle=",
    ),
    (
        "connect_args not a dict",
        lambda: made("postgresql://u@h/db", auth="iam", connect_args=["sslmode"]),
        "dict",
    ),
    (
        "env: bad ttl",
        _env(SECUREDB_URL="postgresql://u@h/db", SECUREDB_AUTH="iam", SECUREDB_IAM_TOKEN_TTL="15m"),
        "iam_token_ttl",
    ),
    (
        "env: bad auth",
        _env(SECUREDB_URL="postgresql://u@h/db", SECUREDB_AUTH="token"),
        "bad value for auth",
    ),
    ("env: bad url", _env(SECUREDB_URL="oracle://u@h/db", SECUREDB_AUTH="iam"), "scheme"),
    ("env: nothing", _env(), "SECUREDB_URL and SECUREDB_SECRET_ID are not set"),
    (
        "env: bad tunnel",
        _env(SECUREDB_URL="postgresql://u@h/db", SECUREDB_AUTH="iam", SECUREDB_TUNNEL="nowhere"),
        "tunnel",
    ),
    (
        "env: missing CA",
        _env(
            SECUREDB_URL="postgresql://u@h/db",
            SECUREDB_AUTH="iam",
            SECUREDB_CA_BUNDLE="/nonexistent.pem",
        ),
        "ca_bundle",
    ),
    (
        "secret: unsupported engine",
        lambda: Config.from_url(secret_id="s").with_secret_fields(
            {"engine": "oracle-ee", "host": RDS}
        ),
        "unsupported engine",
    ),
    (
        "secret: no engine",
        lambda: Config.from_url(secret_id="s").with_secret_fields({"host": RDS}),
        "no engine",
    ),
    (
        "secret: no host",
        lambda: Config.from_url(secret_id="s").with_secret_fields({"engine": "postgres"}),
        "no host",
    ),
    (
        "ttl infinite",
        lambda: made("postgresql://u@h/db", auth="iam", iam_token_ttl=math.inf),
        "iam_token_ttl",
    ),
    (
        "ttl NaN",
        lambda: made("postgresql://u@h/db", auth="iam", iam_token_ttl="nan"),
        "iam_token_ttl",
    ),
    (
        "ttl not whole",
        lambda: made("postgresql://u@h/db", auth="iam", iam_token_ttl=1.5),
        "whole number",
    ),
    ("secret_ttl NaN", lambda: made(secret_id="s", secret_ttl="nan"), "secret_ttl"),
    (
        "secret_ttl infinite",
        lambda: made(secret_id="s", secret_ttl=math.inf),
        "secret_ttl",
    ),
    (
        "connect_timeout NaN",
        lambda: made("postgresql://u@h/db", auth="iam", connect_timeout=math.nan),
        "connect_timeout",
    ),
    ("port zero", lambda: made("postgresql://u@h:0/db", auth="iam"), "port"),
    (
        "tunnel IPv6 unbracketed",
        lambda: made("postgresql://u@h/db", auth="iam", tunnel="::1"),
        r"\[::1\]:5433",
    ),
    (
        "tunnel IPv6 with port unbracketed",
        lambda: made("postgresql://u@h/db", auth="iam", tunnel="::1:5433"),
        "tunnel",
    ),
    (
        "refresh empty",
        lambda: made("postgresql://u@h/db", auth="iam", refresh=""),
        "bad value for refresh",
    ),
    (
        "region malformed",
        lambda: made("postgresql://u@h/db", auth="iam", region="eu west 2"),
        "bad value for region",
    ),
    (
        "region a URL",
        lambda: made("postgresql://u@h/db", auth="iam", region="https://evil"),
        "bad value for region",
    ),
    (
        "host in the URL query",
        lambda: made(f"postgresql://u:hunter2@localhost/db?sslmode=disable&host={RDS}"),
        "'host' is securedb's",
    ),
    (
        "hostaddr in connect_args",
        lambda: made(f"postgresql://u@{RDS}/db", auth="iam", connect_args={"hostaddr": "10.0.0.9"}),
        "'hostaddr' is securedb's",
    ),
    (
        "gssencmode for a remote host",
        lambda: made(f"postgresql://u@{RDS}/db", auth="iam", connect_args={"gssencmode": "prefer"}),
        "gssencmode='prefer' would weaken TLS",
    ),
    (
        "sslnegotiation for a remote host",
        lambda: made(f"postgresql://u@{RDS}/db?sslnegotiation=direct", auth="iam"),
        "sslnegotiation",
    ),
    (
        "pymysql option file",
        lambda: made(f"mysql://u@{RDS}/db?read_default_file=/tmp/my.cnf", auth="iam"),
        "'read_default_file' is securedb's",
    ),
    (
        "pymysql ssl in the URL",
        lambda: made(f"mysql://u@{RDS}/db?ssl_verify_identity=false", auth="iam"),
        "ssl_verify_identity='false' would weaken TLS",
    ),
    (
        "Config built directly",
        lambda: Config(auth="iam", engine="postgresql", host=RDS, user="u", iam_token_ttl=0),
        "iam_token_ttl",
    ),
    (
        "Config replaced",
        lambda: dataclasses.replace(
            Config.from_url(f"postgresql://u@{RDS}/db", auth="iam"), port=70000
        ),
        "port",
    ),
    (
        "Config with a bad engine",
        lambda: Config(auth="iam", engine="oracle", host=RDS, user="u"),  # type: ignore[arg-type]
        "bad value for engine",
    ),
    (
        "secret: bad port",
        lambda: Config.from_url(secret_id="s").with_secret_fields(
            {"engine": "postgres", "host": RDS, "port": "x"}
        ),
        "port",
    ),
]


@pytest.mark.parametrize(("case", "make", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(case: str, make: Any, match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match) as caught:
        make()
    assert "hunter2" not in str(caught.value)


WRONG_REGION = (
    "region='us-east-1' disagrees with the endpoint mydb.abc.eu-west-2.rds.amazonaws.com, "
    "which is in 'eu-west-2': the IAM token would be signed for us-east-1 and refused; drop "
    "region= (the endpoint's region is used) or set region='eu-west-2'"
)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Config.from_url(
            "postgresql://u@mydb.abc.eu-west-2.rds.amazonaws.com/db", region="us-east-1", auth="iam"
        ),
        lambda: Config.from_url(
            "postgresql://u@mydb.abc.eu-west-2.rds.amazonaws.com/db?auth=iam&region=us-east-1"
        ),
        _env(
            SECUREDB_URL="mysql://u@mydb.abc.eu-west-2.rds.amazonaws.com/db",
            SECUREDB_AUTH="iam",
            SECUREDB_REGION="us-east-1",
        ),
    ],
    ids=["keyword", "query", "environment"],
)
def test_iam_region_must_be_the_endpoints(make: Any) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        make()
    assert str(caught.value) == WRONG_REGION


def test_a_region_the_endpoint_does_not_contradict_is_kept() -> None:
    same = Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", region="eu-west-2")
    assert same.region == "eu-west-2"
    other = Config.from_url("postgresql://u@db.example.com/db", auth="iam", region="us-east-1")
    assert other.region == "us-east-1"
    # No IAM token is signed for a secret: its region= says where the secret lives.
    secret = Config.from_url(f"postgresql://u@{RDS}/db", secret_id="s", region="us-east-1")
    assert secret.region == "us-east-1"


@pytest.mark.parametrize(
    ("url", "start"),
    [
        (
            f"postgresql://u@{RDS}/db?auht=iam",
            "unknown option 'auht' in the URL's query (did you mean 'auth'?)",
        ),
        (
            f"postgresql://u@{RDS}/db?auth=iam&sslmdoe=require",
            "unknown psycopg/libpq argument 'sslmdoe' (did you mean 'sslmode'?): securedb",
        ),
        (
            f"mysql://u@{RDS}/db?auth=iam&read_timeot=5",
            "unknown PyMySQL argument 'read_timeot' (did you mean 'read_timeout'?): securedb",
        ),
        (
            f"postgresql://u@{RDS}/db?auth=iam&Application_Name=web",
            "unknown psycopg/libpq argument 'Application_Name' (did you mean "
            "'application_name'?): securedb",
        ),
        (
            f"postgresql://u@{RDS}/db?auth=iam&colour=red",
            "unknown psycopg/libpq argument 'colour': securedb passes on",
        ),
    ],
    ids=["securedb option, no auth yet", "libpq", "PyMySQL", "letter case", "nothing close"],
)
def test_a_misspelt_query_name_gets_the_closest_name(url: str, start: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        made(url)
    assert str(caught.value).startswith(start)


def test_a_securedb_option_among_driver_arguments_is_named() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        made(f"postgresql://u@{RDS}/db", auth="iam", connect_args={"region": "x"})
    assert str(caught.value).startswith(
        "unknown psycopg/libpq argument 'region' ('region' is securedb's own option, not a "
        "driver argument): securedb passes on"
    )


def test_the_drivers_real_parameters_still_pass_in_the_query() -> None:
    pg = Config.from_url(f"postgresql://u@{RDS}/db?auth=iam&sslmode=verify-full&keepalives=1")
    assert pg.connect_args == {"sslmode": "verify-full", "keepalives": "1"}
    my = Config.from_url(f"mysql://u@{RDS}/db?auth=iam&read_timeout=5&charset=utf8mb4")
    assert my.connect_args == {"read_timeout": "5", "charset": "utf8mb4"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@h:abc/db", "bad port in the URL: expected a number from 1 to 65535"),
        # No '@host': the "port" is the password, never quoted.
        ("postgresql://u:hunter2/db", "bad port in the URL: expected a number from 1 to 65535"),
        ("mysql://u@h:70000/db", "bad port '70000' in the URL: expected a number from 1 to 65535"),
        ("postgresql://u@h:-1/db", "bad port '-1' in the URL: expected a number from 1 to 65535"),
        ("postgresql://u@[::1]:x/db", "bad port in the URL: expected a number from 1 to 65535"),
        (
            "postgresql://u:pw@h:5432:1/db",
            "bad port in the URL: expected a number from 1 to 65535",
        ),
        # A '/' in the password ends the netloc early: its start would read as the port.
        (
            "postgresql://u:hunter2/x@h/db",
            "bad URL: its host or port does not parse; a '/', '?' or '#' in the user name or "
            "password must be written %2F, %3F, %23",
        ),
        ("postgresql://u@[::1/db", "bad URL: its host does not parse"),
    ],
    ids=[
        "letters",
        "password as port",
        "too big",
        "negative",
        "ipv6 host",
        "two colons",
        "cut password",
        "bracket",
    ],
)
def test_bad_ports_have_their_own_message(url: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        Config.from_url(url, auth="iam")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {},
            "no database in the environment: SECUREDB_URL and SECUREDB_SECRET_ID are not set; "
            "set SECUREDB_URL to 'postgresql://user@host:5432/db' (with SECUREDB_AUTH=iam for "
            "IAM tokens), or SECUREDB_SECRET_ID to the name or ARN of an RDS-managed secret",
        ),
        (
            {"SECUREDB_URL": "", "SECUREDB_REGION": "eu-west-2"},
            "no database in the environment: SECUREDB_URL and SECUREDB_SECRET_ID are not set; "
            "set SECUREDB_URL to 'postgresql://user@host:5432/db' (with SECUREDB_AUTH=iam for "
            "IAM tokens), or SECUREDB_SECRET_ID to the name or ARN of an RDS-managed secret",
        ),
        (
            {"SECUREDB_AUTH": "iam"},
            "no database URL: SECUREDB_URL is not set and auth='iam' needs one; set "
            "SECUREDB_URL to 'postgresql://user@host:5432/db' or 'mysql://user@host:3306/db'",
        ),
        (
            {"SECUREDB_AUTH": "secret"},
            "auth='secret' but SECUREDB_SECRET_ID is not set: set it to the name or ARN of the "
            "Secrets Manager secret",
        ),
    ],
    ids=["nothing", "empty url", "iam", "secret"],
)
def test_from_env_names_the_variable_to_set(env: dict[str, str], message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        Config.from_env(env)
    assert str(caught.value) == message


def test_from_env_with_a_url_or_a_secret_alone_still_works() -> None:
    assert Config.from_env({"SECUREDB_SECRET_ID": "rds/app"}).auth == "secret"
    assert Config.from_env({}, secret_id="rds/app").auth == "secret"
    cfg = Config.from_env({"SECUREDB_URL": "postgresql://u:pw@localhost/db"})
    assert cfg.auth == "password"
