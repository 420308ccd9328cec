"""The botocore boundary: each failure's message says what to do, and never what was sent."""

from __future__ import annotations

from typing import Any

import botocore.exceptions as bx
import pytest

from securedb import errors
from securedb.credentials import aws
from securedb.credentials.secrets import SecretSource, parse_secret

WHAT = "secret 'rds/app' not read"


def client_error(code: str | None) -> bx.ClientError:
    response: dict[str, Any] = {} if code is None else {"Error": {"Code": code}}
    return bx.ClientError(response, "GetSecretValue")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            bx.NoCredentialsError(),
            f"{WHAT}: no AWS credentials found; set AWS_PROFILE or the AWS_ACCESS_KEY_ID "
            "pair, or attach an IAM role",
        ),
        (
            bx.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
            f"{WHAT}: no AWS credentials found; set AWS_PROFILE or the AWS_ACCESS_KEY_ID "
            "pair, or attach an IAM role",
        ),
        (
            bx.CredentialRetrievalError(provider="container-role", error_msg="key AKIA..."),
            f"{WHAT}: no AWS credentials from container-role; check the role and that its "
            "credentials endpoint answers",
        ),
        (
            client_error("ResourceNotFoundException"),
            f"{WHAT}: AWS said ResourceNotFoundException; check the secret's name or ARN and "
            "the region",
        ),
        (
            client_error("AccessDeniedException"),
            f"{WHAT}: AWS said AccessDeniedException; grant secretsmanager:GetSecretValue "
            "(and kms:Decrypt)",
        ),
        (
            client_error("DecryptionFailure"),
            f"{WHAT}: AWS said DecryptionFailure; grant kms:Decrypt on the secret's KMS key",
        ),
        (
            client_error("ExpiredTokenException"),
            f"{WHAT}: AWS said ExpiredTokenException; refresh the AWS session credentials",
        ),
        (
            client_error("UnrecognizedClientException"),
            f"{WHAT}: AWS said UnrecognizedClientException; check the AWS credentials",
        ),
        (
            client_error("InvalidSignatureException"),
            f"{WHAT}: AWS said InvalidSignatureException; check the AWS secret access key and "
            "the clock",
        ),
        (
            client_error("Throttling"),
            f"{WHAT}: AWS said Throttling; see the AWS error code",
        ),
        (client_error(None), f"{WHAT}: AWS said unknown; see the AWS error code"),
        (
            bx.EndpointConnectionError(endpoint_url="https://sm"),
            f"{WHAT}: cannot reach the AWS endpoint; check the network route or VPC endpoint, "
            "and AWS_ENDPOINT_URL if set",
        ),
        (
            bx.ConnectTimeoutError(endpoint_url="https://sm"),
            f"{WHAT}: cannot reach the AWS endpoint; check the network route or VPC endpoint, "
            "and AWS_ENDPOINT_URL if set",
        ),
        (
            bx.ReadTimeoutError(endpoint_url="https://sm"),
            f"{WHAT}: cannot reach the AWS endpoint; check the network route or VPC endpoint, "
            "and AWS_ENDPOINT_URL if set",
        ),
        (
            KeyError("pw-in-the-message"),
            f"{WHAT}: KeyError from the AWS SDK (its details are withheld: they may hold a "
            "secret); check the AWS config and credentials files and AWS_* variables",
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_translate(exc: Exception, message: str) -> None:
    out = aws.translate(exc, WHAT)
    assert type(out) is errors.CredentialsError
    assert str(out) == message


def test_credential_retrieval_without_a_provider() -> None:
    exc = bx.CredentialRetrievalError(provider="x", error_msg="y")
    exc.kwargs.pop("provider")
    assert str(aws.translate(exc, WHAT)).startswith(f"{WHAT}: no AWS credentials from a provider;")


def test_region_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert aws.region_or_default("us-east-2", "x") == "us-east-2"
    assert aws.region_or_default(None, "x") == "eu-west-1"
    monkeypatch.delenv("AWS_REGION")
    assert aws.region_or_default(None, "x") == "eu-west-3"


def test_no_region_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(aws, "_session", None)
    with pytest.raises(errors.CredentialsError) as caught:
        aws.region_or_default(None, WHAT)
    assert str(caught.value) == (
        f"no AWS region for {WHAT}: pass region=, set AWS_REGION, or use an endpoint name "
        "like *.us-east-1.rds.amazonaws.com"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            None,
            "secret 'rds/app' has no SecretString; store the credentials as JSON like "
            '{"username": ..., "password": ...}',
        ),
        (
            "pw-not-json",
            "secret 'rds/app' is not JSON; store the credentials as JSON like "
            '{"username": ..., "password": ...}',
        ),
        ('["a"]', "secret 'rds/app' is JSON but not an object with username and password"),
        (
            '{"username": "", "password": 5}',
            "secret 'rds/app' lacks username and password (a non-empty string)",
        ),
        ('{"username": "app"}', "secret 'rds/app' lacks password (a non-empty string)"),
    ],
)
def test_parse_secret_names_what_is_wrong_not_the_value(text: Any, message: str) -> None:
    with pytest.raises(errors.CredentialsError) as caught:
        parse_secret(text, "secret 'rds/app'")
    assert str(caught.value) == message


def test_a_secret_that_does_not_parse_is_named_by_the_source() -> None:
    class Client:
        def get_secret_value(self, **_: Any) -> dict[str, Any]:
            return {"VersionId": "v1", "SecretString": "pw-not-json"}

    source = SecretSource("rds/app", "eu-west-2", 600)
    source._client = Client()
    with pytest.raises(errors.CredentialsError, match=r"^secret 'rds/app' is not JSON"):
        source.fetch()


def test_a_client_error_without_details() -> None:
    class Client:
        def get_secret_value(self, **_: Any) -> dict[str, Any]:
            raise client_error(None)

    source = SecretSource("rds/app", "eu-west-2", 600)
    source._client = Client()
    with pytest.raises(errors.CredentialsError, match="AWS said unknown"):
        source.fetch()


def test_the_secrets_client_is_for_the_secrets_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    source = SecretSource("rds/app", "eu-west-1", 600)
    client = source._get_client()
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.service_model.service_name == "secretsmanager"
    assert source._get_client() is client


def test_the_secrets_client_without_a_region(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(aws, "_session", None)
    with pytest.raises(errors.CredentialsError, match=r"^no AWS region for secret 'rds/app':"):
        SecretSource("rds/app", None, 600).fetch()
