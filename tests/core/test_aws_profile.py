"""A profile that does not exist: a CredentialsError naming it, its files and the fix."""

from __future__ import annotations

from pathlib import Path

import botocore.exceptions as bx
import pytest

from securedb import errors
from securedb.credentials import aws
from securedb.credentials.iam import IamTokenSource
from securedb.credentials.secrets import SecretSource

HOST = "mydb.abc123.eu-west-2.rds.amazonaws.com"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"


@pytest.fixture
def aws_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, str]:
    """AWS config and credentials files with a `default` profile only, and no other source."""
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("[default]\nregion = eu-west-2\n")
    credentials.write_text(
        f"[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = {SECRET_KEY}\n"
    )
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr("securedb.credentials.aws._session", None)
    return str(config), str(credentials)


def not_found(files: tuple[str, str], variable: str) -> str:
    return (
        f"AWS profile 'nosuch' is not in {files[0]} or {files[1]} ({variable}); "
        f"set {variable} to one that exists, or unset it"
    )


def test_iam_token_names_the_profile(
    monkeypatch: pytest.MonkeyPatch, aws_files: tuple[str, str]
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    with pytest.raises(errors.CredentialsError) as raised:
        IamTokenSource(HOST, 5432, "app", "eu-west-2", 900).fetch()
    assert str(raised.value) == (
        f"IAM token for app@{HOST}:5432 not signed: {not_found(aws_files, 'AWS_PROFILE')}"
    )
    assert SECRET_KEY not in str(raised.value)
    assert raised.value.__cause__ is None


def test_secret_names_the_profile(
    monkeypatch: pytest.MonkeyPatch, aws_files: tuple[str, str]
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    with pytest.raises(errors.CredentialsError) as raised:
        SecretSource("rds/app", "eu-west-2", 60.0).fetch()
    assert str(raised.value) == (
        f"secret 'rds/app' not read: {not_found(aws_files, 'AWS_PROFILE')}"
    )
    assert SECRET_KEY not in str(raised.value)
    # Without a region, the profile is first read for one.
    with pytest.raises(errors.CredentialsError) as raised:
        SecretSource("rds/app", None, 60.0).fetch()
    assert str(raised.value) == (
        f"no AWS region for secret 'rds/app': {not_found(aws_files, 'AWS_PROFILE')}"
    )


def test_region_lookup_names_the_older_variable(
    monkeypatch: pytest.MonkeyPatch, aws_files: tuple[str, str]
) -> None:
    """Keys in the environment sign without botocore, but the region still comes from
    profile (AWS_DEFAULT_PROFILE, botocore's older name)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_PROFILE", "nosuch")
    with pytest.raises(errors.CredentialsError) as raised:
        IamTokenSource("db.example.com", 5432, "app", None, 900).fetch()
    assert str(raised.value) == (
        "no AWS region for IAM token for app@db.example.com:5432: "
        + not_found(aws_files, "AWS_DEFAULT_PROFILE")
    )
    assert SECRET_KEY not in str(raised.value)


def test_default_files_when_none_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    error = aws.translate(bx.ProfileNotFound(profile="nosuch"), "secret 'x' not read")
    assert str(error) == (
        "secret 'x' not read: AWS profile 'nosuch' is not in ~/.aws/config or "
        "~/.aws/credentials (AWS_PROFILE); set AWS_PROFILE to one that exists, or unset it"
    )


def test_the_variable_botocore_reads_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_PROFILE", "nosuch")
    monkeypatch.setenv("AWS_PROFILE", "default")
    monkeypatch.setenv("AWS_CONFIG_FILE", "conf")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "creds")
    error = aws.translate(bx.ProfileNotFound(profile="nosuch"), "x")
    assert str(error) == (
        "x: AWS profile 'nosuch' is not in conf or creds (AWS_DEFAULT_PROFILE, which botocore "
        "reads before AWS_PROFILE); set AWS_DEFAULT_PROFILE to one that exists, or unset it"
    )


def test_a_profile_named_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not from the environment (a profile= of the caller's own session): no variable to blame."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "creds")
    error = aws.translate(bx.ProfileNotFound(profile="nosuch"), "x")
    assert str(error) == (
        "x: AWS profile 'nosuch' is not in ~/.aws/config or creds; name a profile that exists"
    )
