"""Which configurations share one credential cache, and what each cache fetches from."""

from __future__ import annotations

import pytest

from securedb.config import Config
from securedb.credentials import cache_for, identity
from securedb.credentials.iam import IamTokenSource
from securedb.credentials.secrets import SecretSource
from securedb.credentials.static import StaticSource

RDS = "MyDB.abc123.eu-west-2.rds.amazonaws.com"
ARN = "arn:aws:secretsmanager:us-west-1:123456789012:secret:rds/app-AbCdEf"


def iam(**options: object) -> Config:
    return Config.from_url(f"postgresql://app@{RDS}/app", auth="iam", refresh="lazy", **options)


PLAIN = "db.example.com"


def plain(**options: object) -> Config:
    return Config.from_url(f"postgresql://app@{PLAIN}/app", auth="iam", refresh="lazy", **options)


def test_iam_identity() -> None:
    assert identity(iam()) == ("iam", RDS.lower(), 5432, "app", "eu-west-2", 900, "lazy")
    # A host that names no region takes region= (one that names another is refused).
    assert identity(plain(region="us-east-1", iam_token_ttl=300)) == (
        "iam",
        PLAIN,
        5432,
        "app",
        "us-east-1",
        300,
        "lazy",
    )
    mixed = Config(auth="iam", engine="postgresql", host=RDS, user="app", refresh="lazy")
    assert identity(mixed) == identity(iam())
    # per-connection things do not split the cache
    assert identity(iam(tunnel="127.0.0.1:6000", connect_timeout=9)) == identity(iam())


def test_secret_identity_and_region() -> None:
    by_host = Config.from_url(f"mysql://app@{RDS}/app", secret_id="rds/app", secret_ttl=60)
    assert identity(by_host) == ("secret", "rds/app", "eu-west-2", 60.0, by_host.refresh)
    by_arn = Config.from_url(f"mysql://app@{RDS}/app", secret_id=ARN)
    assert identity(by_arn)[2] == "us-west-1"
    given = Config.from_url(secret_id=ARN, region="ap-south-1")
    assert identity(given)[2] == "ap-south-1"
    empty = Config.from_url(f"mysql://app@{RDS}/app", secret_id="arn:aws:secretsmanager::1:x")
    assert identity(empty)[2] == "eu-west-2"
    assert identity(Config.from_url(secret_id="rds/app"))[2] is None
    assert identity(Config.from_url(secret_id="arn:aws"))[2] is None
    assert identity(Config.from_url(secret_id="arn:aws:secretsmanager"))[2] is None
    assert identity(Config.from_url(secret_id="arn:aws:secretsmanager:us-west-2"))[2] == (
        "us-west-2"
    )


def test_password_identity() -> None:
    cfg = Config.from_url("postgresql://app:pw-1@localhost/db")
    assert identity(cfg) == ("password", "app", "pw-1")


def test_cache_for_iam() -> None:
    cache = cache_for(plain(region="us-east-1", iam_token_ttl=300))
    source = cache.source
    assert isinstance(source, IamTokenSource)
    assert (source.host, source.port, source.user, source.ttl) == (PLAIN, 5432, "app", 300)
    assert source._region == "us-east-1"
    assert cache_for(iam()).source._region == "eu-west-2"  # type: ignore[attr-defined]
    assert cache.background is False


@pytest.mark.parametrize("refresh", ["lazy", "background"])
def test_cache_for_secret(refresh: str) -> None:
    cache = cache_for(Config.from_url(secret_id=ARN, secret_ttl=60, refresh=refresh))
    source = cache.source
    assert isinstance(source, SecretSource)
    assert (source.secret_id, source.ttl, source._region) == (ARN, 60.0, "us-west-1")
    assert cache.background is (refresh == "background")
    cache.close()


def test_cache_for_a_password_is_lazy_and_static() -> None:
    cache = cache_for(Config.from_url("postgresql://app:pw-1@localhost/db", refresh="background"))
    assert isinstance(cache.source, StaticSource)
    assert cache.background is False
    cred = cache.get()
    assert (cred.user, cred.password, cred.version) == ("app", "pw-1", "static")
    assert cache.source.name == "password for app"
