"""Config edges the main table leaves open: exact messages, tuple tunnels, secret users.

A wrong message is a user sent the wrong way; each is pinned word for word here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from securedb import errors
from securedb.config import Config, DriverArgs, region_from_host, split_options
from securedb.connector import Connector

RDS = "mydb.abc123.eu-west-2.rds.amazonaws.com"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Config.from_url("postgresql://app:pw@localhost/db", auth="iam"),
            "the URL has a password but auth='iam'; remove the password, or use auth='password'",
        ),
        (
            lambda: Config(auth="iam", engine="postgresql", host=RDS),
            "auth='iam' needs a user in the URL: postgresql://USER@host/db",
        ),
        (
            lambda: Config(auth="secret"),
            "auth='secret' needs secret_id= (a Secrets Manager name or ARN)",
        ),
        (
            lambda: Config(auth="password", engine="postgresql", host="localhost", user="u"),
            "auth='password' needs a password in the URL",
        ),
        (
            lambda: Config.from_url("postgresql://:pw@localhost/db"),
            "auth='password' needs a user in the URL: postgresql://USER:PW@host/db",
        ),
        (
            lambda: Config.from_url(123),  # type: ignore[arg-type]
            "url must be a string like 'postgresql://user@host:5432/db', not int",
        ),
        (
            lambda: Config.from_url("postgresql://u@h:99999/db", auth="iam"),
            "bad port '99999' in the URL: expected a number from 1 to 65535",
        ),
        (
            lambda: Config.from_url("oracle://u@h/db", auth="iam"),
            "unsupported URL scheme 'oracle'; use one of mariadb, mariadb+aiomysql, "
            "mariadb+pymysql, mysql, mysql+aiomysql, mysql+pymysql, postgres, postgresql, "
            "postgresql+asyncpg, postgresql+psycopg, postgresql+psycopg_async",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", ca_bundle=5),
            "ca_bundle must be a path, not int",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", connect_args=[1]),
            "connect_args must be a dict of driver keyword arguments",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", tunnel="nope"),
            "bad value for tunnel: 'nope'; expected 'host:port' of the local end of an SSM or "
            "SSH port forward, like '127.0.0.1:5433' or '[::1]:5433'",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", tunnel=("", 5433)),
            "bad value for tunnel: ('', 5433); expected 'host:port' of the local end of an SSM "
            "or SSH port forward, like '127.0.0.1:5433' or '[::1]:5433'",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", tunnel="h:0"),
            "bad value for tunnel port: '0'; must be between 1 and 65535",
        ),
        (
            lambda: Config.from_url(secret_id="s").with_secret_fields(
                {"engine": "postgres", "host": RDS, "port": "x"}
            ),
            "bad value for secret port: 'x'; expected a number",
        ),
        (
            lambda: Config.from_url(secret_id="s").with_secret_fields({"engine": "oracle"}),
            "secret 's' names an unsupported engine 'oracle'; pass a postgresql:// or mysql:// URL",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db"),
            "say how to authenticate: auth='iam' for IAM tokens, secret_id= for Secrets "
            "Manager, or a password in the URL (local development)",
        ),
        (
            lambda: Config(auth="iam", user="u"),
            "no database URL: pass 'postgresql://user@host:5432/db' or "
            "'mysql://user@host:3306/db', or secret_id= with an RDS-managed secret",
        ),
        (
            lambda: Config(auth="iam", engine="postgresql", user="u"),
            "the URL has no host",
        ),
        (
            lambda: Config(auth="iam", engine="postgresql", host=5, user="u"),  # type: ignore[arg-type]
            "host must be a non-empty string",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", colour="red"),
            "unknown option colour; securedb options are auth, ca_bundle, connect_args, "
            "connect_timeout, driver, iam_token_ttl, max_lag, reader_fallback, refresh, region, "
            "role, secret_id, secret_ttl, topology, tunnel",
        ),
        (
            lambda: Config(auth="iam", engine="postgresql", host=RDS, user="u", port=0),
            "bad value for port: 0; must be between 1 and 65535",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", iam_token_ttl=0),
            "bad value for iam_token_ttl: 0; must be between 1 and 900",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", secret_id="s", secret_ttl=0),
            "bad value for secret_ttl: 0; must be between 1 and 604800.0",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", connect_timeout=0),
            "bad value for connect_timeout: 0; must be between 0.1 and 3600.0",
        ),
        (
            lambda: Config.from_url(secret_id="s").with_secret_fields({"host": RDS}),
            "secret 's' has no engine and no URL was given; pass a postgresql:// or mysql:// URL",
        ),
        (
            lambda: Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", b=1, a=2),
            "unknown option a, b; securedb options are auth, ca_bundle, connect_args, "
            "connect_timeout, driver, iam_token_ttl, max_lag, reader_fallback, refresh, region, "
            "role, secret_id, secret_ttl, topology, tunnel",
        ),
        (
            lambda: split_options(
                Config.from_url("postgresql://u:p@localhost/db"), {"tunnel": 1, "region": 1}
            ),
            "options region, tunnel given with a Config; set them on the Config instead",
        ),
        (
            lambda: split_options(Config.from_url("postgresql://u:p@localhost/db"), {"region": 1}),
            "options region given with a Config; set them on the Config instead",
        ),
    ],
)
def test_error_messages_exactly(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        make()
    assert str(caught.value) == message


def test_missing_ca_bundle_message(tmp_path: Path) -> None:
    missing = tmp_path / "none.pem"
    with pytest.raises(errors.ConfigError) as caught:
        Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", ca_bundle=str(missing))
    assert str(caught.value) == (
        f"ca_bundle {str(missing)!r} is not a file; pass the path of a PEM trust store, or "
        "leave it out to use the bundled RDS CA"
    )


def test_a_ca_bundle_without_certificates(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(errors.ConfigError) as caught:
        Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", ca_bundle=str(empty))
    assert str(caught.value) == f"ca_bundle {str(empty)!r} holds no PEM certificate"


def test_tunnel_as_a_tuple() -> None:
    cfg = Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", tunnel=("127.0.0.1", 5433))
    assert cfg.tunnel == ("127.0.0.1", 5433)
    with pytest.raises(errors.ConfigError, match="bad value for tunnel"):
        Config.from_url(f"postgresql://u@{RDS}/db", auth="iam", tunnel=("a", 1, 2))


@pytest.mark.parametrize("port", [1, 65535])
def test_port_bounds_are_inclusive(port: int) -> None:
    assert Config.from_url(f"postgresql://u@{RDS}:{port}/db", auth="iam").port == port


def test_region_from_no_host() -> None:
    assert region_from_host(None) is None
    assert region_from_host("") is None


def test_the_secrets_username_is_the_user() -> None:
    """The password in a secret belongs to the secret's username, not the URL's user."""
    cfg = Config.from_url(f"postgresql://old@{RDS}/db", secret_id="s")
    assert cfg.with_secret_fields({"username": "app"}).user == "app"
    assert cfg.with_secret_fields({}).user == "old"


def test_blank_query_values_are_checked_too() -> None:
    with pytest.raises(errors.ConfigError, match="sslmode='' would weaken TLS"):
        Connector(Config.from_url(f"postgresql://u@{RDS}/db?auth=iam&sslmode="))


def test_dbname_keeps_its_letters() -> None:
    assert Config.from_url("postgresql://u@h/XXdb/", auth="iam").dbname == "XXdb/"


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECUREDB_URL", f"postgresql://app@{RDS}/db")
    monkeypatch.setenv("SECUREDB_AUTH", "iam")
    assert Config.from_env().user == "app"


def test_split_options() -> None:
    cfg = Config.from_url("postgresql://u:p@localhost/db")
    assert split_options(cfg, {"pool_size": 3}) == (cfg, {"pool_size": 3})
    made, rest = split_options("postgresql://u:p@localhost/db", {"region": "eu-west-1", "echo": 1})
    assert (made.region, rest) == ("eu-west-1", {"echo": 1})


def test_config_repr_shows_values_and_masks_the_password() -> None:
    cfg = Config.from_url("postgresql://app:pw-hidden@localhost:5433/db", refresh="lazy")
    assert repr(cfg) == (
        "Config(auth='password', engine='postgresql', host='localhost', port=5433, "
        "user='app', dbname='db', password=***, iam_token_ttl=900, secret_ttl=3600.0, "
        "refresh='lazy', connect_timeout=5.0, topology='auto', max_lag=5.0, "
        "reader_fallback=False)"
    )


def test_driver_args_is_a_read_only_value() -> None:
    args = DriverArgs({"a": 1})
    assert args == {"a": 1}
    assert hash(args) == hash(DriverArgs({"a": 2}))
    assert repr(args) == "{'a': 1}"


def test_url_driver_arguments_merge_with_connect_args() -> None:
    cfg = Config.from_url(
        f"postgresql://u@{RDS}/db?auth=iam&application_name=web&options=x",
        connect_args={"options": "y"},
    )
    assert dict(cfg.connect_args) == {"application_name": "web", "options": "y"}


def test_a_secret_with_a_host_and_no_engine_gets_no_port_yet() -> None:
    cfg = Config(auth="secret", secret_id="s", host=RDS)
    assert cfg.port is None
    assert Config.from_url(f"postgresql://u@{RDS}/db", secret_id="s", secret_ttl=1).secret_ttl == 1
