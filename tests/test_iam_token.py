"""The local token signer: what it makes is what RDS (the bed's verifier) accepts."""

from __future__ import annotations

import datetime
import time
from urllib.parse import parse_qs

import botocore.loaders
import pytest

from bed import tokens, verifier
from bed.moto import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from securedb import errors
from securedb.credentials.iam import IamTokenSource, presign

HOST = "mydb.abc123.us-east-1.rds.amazonaws.com"
CONF = {"access_keys": {ACCESS_KEY_ID: SECRET_ACCESS_KEY}, "groups": {"pg": [f"{HOST}:5432"]}}


@pytest.fixture
def aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)


def test_token_accepted_and_shaped_like_botocores(aws_keys: None) -> None:
    token = IamTokenSource(HOST, 5432, "iam_user", "us-east-1", 900).fetch().password
    assert verifier.verify(token, "iam_user", CONF, "pg", time.time()) is None
    ours = parse_qs(token.partition("?")[2])
    theirs = parse_qs(tokens.mint(HOST, 5432, "iam_user").partition("?")[2])
    assert ours.keys() == theirs.keys()
    assert ours["X-Amz-Expires"] == ["900"]


def test_ttl_is_the_tokens_expiry(aws_keys: None) -> None:
    cred = IamTokenSource(HOST, 5432, "iam_user", "us-east-1", 10).fetch()
    assert parse_qs(cred.password.partition("?")[2])["X-Amz-Expires"] == ["10"]
    assert cred.expires_at - time.monotonic() <= 10
    assert cred.refresh_at < cred.expires_at


def test_user_names_are_quoted(aws_keys: None) -> None:
    token = IamTokenSource(HOST, 5432, "app user+1", "us-east-1", 900).fetch().password
    assert "DBUser=app%20user%2B1" in token
    assert verifier.verify(token, "app user+1", CONF, "pg", time.time()) is None


def test_no_service_model_is_loaded(aws_keys: None, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    original = botocore.loaders.Loader.load_service_model

    def spy(
        self: botocore.loaders.Loader, service_name: str, *args: object, **kwargs: object
    ) -> object:
        loaded.append(service_name)
        return original(self, service_name, *args, **kwargs)

    monkeypatch.setattr(botocore.loaders.Loader, "load_service_model", spy)
    IamTokenSource(HOST, 5432, "iam_user", "us-east-1", 900).fetch()
    assert loaded == []


def test_no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr("securedb.credentials.aws._session", None)
    with pytest.raises(errors.CredentialsError, match="no AWS credentials"):
        IamTokenSource(HOST, 5432, "iam_user", "us-east-1", 900).fetch()


def test_no_region(monkeypatch: pytest.MonkeyPatch, aws_keys: None) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setattr("securedb.credentials.aws._session", None)
    with pytest.raises(errors.CredentialsError, match="no AWS region"):
        IamTokenSource("db.example.com", 5432, "iam_user", None, 900).fetch()


@pytest.mark.parametrize("session_token", [None, "IQoJb3JpZ2luX2VjE/+=" * 80])
@pytest.mark.parametrize("host", [HOST, "MyDB.Example.COM", "127.0.0.1"])
def test_same_token_as_botocore(host: str, session_token: str | None) -> None:
    """Signed at the same second with the same keys, the token is botocore's, byte for byte."""
    when = datetime.datetime(2026, 11, 25, 3, 4, 5, tzinfo=datetime.timezone.utc)
    ours = presign(
        host,
        5432,
        "app user+1",
        "eu-west-2",
        (ACCESS_KEY_ID, SECRET_ACCESS_KEY, session_token),
        900,
        when,
    )
    theirs = tokens.mint(
        host, 5432, "app user+1", session_token=session_token, signed_at=when, region="eu-west-2"
    )
    assert ours.partition("?")[0] == theirs.partition("?")[0]
    assert parse_qs(ours.partition("?")[2]) == parse_qs(theirs.partition("?")[2])
