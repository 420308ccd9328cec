"""Which AWS keys sign a token: the environment's only when botocore would take them too."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from securedb import errors
from securedb.credentials import aws
from securedb.credentials.iam import IamTokenSource


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty credential chain: no keys, no profile, no metadata endpoints, a new session."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(aws, "_session", None)
    return tmp_path


def source() -> IamTokenSource:
    return IamTokenSource("db.example", 5432, "app", "eu-west-2", 900)


def test_half_a_key_pair_is_not_used(chain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHALFPAIR")
    with pytest.raises(errors.CredentialsError) as caught:
        source()._keys()
    assert str(caught.value) == (
        "IAM token for app@db.example:5432 not signed: no AWS credentials found; set "
        "AWS_PROFILE or the AWS_ACCESS_KEY_ID pair, or attach an IAM role"
    )


def test_the_environments_keys_come_first_as_in_botocore(
    chain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's chain puts the environment before a profile named by AWS_PROFILE."""
    (chain / "credentials").write_text(
        "[p1]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "p1")
    assert source()._keys() == ("AKIAPROFILE", "profile-secret", None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setattr(aws, "_session", None)  # a new process: no credentials cached
    assert source()._keys() == ("AKIAENV", "env-secret", None)


def test_a_chain_failure_is_translated(chain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "missing")
    with pytest.raises(errors.CredentialsError) as caught:
        source()._keys()
    assert str(caught.value) == (
        f"IAM token for app@db.example:5432 not signed: AWS profile 'missing' is not in "
        f"{chain}/config or {chain}/credentials (AWS_PROFILE); set AWS_PROFILE to one that "
        "exists, or unset it"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_no_credentials_anywhere(chain: Path) -> None:
    with pytest.raises(errors.CredentialsError) as caught:
        source()._keys()
    assert str(caught.value) == (
        "IAM token for app@db.example:5432 not signed: no AWS credentials found; set "
        "AWS_PROFILE or the AWS_ACCESS_KEY_ID pair, or attach an IAM role"
    )


def scope(token: str) -> list[str]:
    return parse_qs(token.partition("?")[2])["X-Amz-Credential"][0].split("/")


@pytest.fixture
def keys(chain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")


@pytest.mark.usefixtures("keys")
def test_the_tokens_region_without_one_given(monkeypatch: pytest.MonkeyPatch) -> None:
    unset = IamTokenSource("db.example", 5432, "app", None, 900)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert scope(unset.fetch().password)[2] == "eu-west-1"
    monkeypatch.delenv("AWS_REGION")
    assert scope(unset.fetch().password)[2] == "eu-west-3"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(errors.CredentialsError, match=r"^no AWS region for IAM token for app@"):
        unset.fetch()


@pytest.mark.usefixtures("keys")
def test_the_token_is_signed_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: local time is another hour
    time.tzset()
    try:
        before = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        token = source().fetch().password
        after = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    stamp = parse_qs(token.partition("?")[2])["X-Amz-Date"][0]
    assert before <= stamp <= after
    assert scope(token)[1] == stamp[:8]


@pytest.mark.usefixtures("keys")
def test_a_token_is_refreshed_before_it_expires_within_its_life() -> None:
    cred = IamTokenSource("db.example", 5432, "app", "eu-west-2", 900, clock=lambda: 1000.0).fetch()
    assert 1000.0 < cred.refresh_at < cred.expires_at < 1000.0 + 900
    assert cred.version is not None
    assert cred.version.startswith("signed at ")
    assert cred.user == "app"
