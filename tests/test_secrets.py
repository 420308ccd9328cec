"""Secrets Manager payloads and failures, against moto's server (bad inputs raise clearly)."""

from __future__ import annotations

import http.server
import json
import logging
import threading

import boto3
import botocore.utils
import pytest

from securedb import errors
from securedb.credentials.secrets import SecretSource

pytestmark = pytest.mark.bed

GOOD = {
    "username": "app",
    "password": "pw-123",
    "engine": "postgres",
    "host": "mydb.abc123.us-east-1.rds.amazonaws.com",
    "port": 5432,
    "dbname": "app",
}


def source(name: str) -> SecretSource:
    return SecretSource(name, "us-east-1", 3600)


def test_rds_managed_secret(aws_env: dict[str, str]) -> None:
    created = boto3.client("secretsmanager").create_secret(
        Name="rds/ok", SecretString=json.dumps(GOOD)
    )
    cred = source("rds/ok").fetch()
    assert (cred.user, cred.password) == ("app", "pw-123")
    assert cred.fields == {
        "engine": "postgres",
        "host": GOOD["host"],
        "port": 5432,
        "dbname": "app",
    }
    assert created["VersionId"]  # the version id logs and rotation name, not a placeholder
    assert cred.version == created["VersionId"]


def test_pending_version_after_a_refusal(aws_env: dict[str, str]) -> None:
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="rds/rot", SecretString=json.dumps(GOOD))
    current = source("rds/rot").fetch()
    sm.put_secret_value(
        SecretId="rds/rot",
        VersionStages=["AWSPENDING"],
        SecretString=json.dumps({**GOOD, "password": "pw-456"}),
    )
    assert source("rds/rot").fetch().password == "pw-123"  # no refusal: AWSCURRENT
    assert source("rds/rot").fetch(rejected=current).password == "pw-456"


BAD_PAYLOADS = {
    "not JSON": ("username=app password=pw-123", "not JSON"),
    "a JSON list": (json.dumps(["app", "pw-123"]), "not an object"),
    "a JSON string": (json.dumps("pw-123"), "not an object"),
    "no password": (json.dumps({"username": "app"}), "lacks password"),
    "no username": (json.dumps({"password": "pw-123"}), "lacks username"),
    "empty password": (json.dumps({"username": "app", "password": ""}), "lacks password"),
    "password a number": (json.dumps({"username": "app", "password": 123}), "lacks password"),
}


@pytest.mark.parametrize("case", BAD_PAYLOADS)
def test_malformed_payloads(aws_env: dict[str, str], case: str) -> None:
    payload, match = BAD_PAYLOADS[case]
    boto3.client("secretsmanager").create_secret(Name="rds/bad", SecretString=payload)
    with pytest.raises(errors.CredentialsError, match=match) as caught:
        source("rds/bad").fetch()
    assert "pw-123" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_binary_secret(aws_env: dict[str, str]) -> None:
    boto3.client("secretsmanager").create_secret(Name="rds/bin", SecretBinary=b"\x00pw-123")
    with pytest.raises(errors.CredentialsError, match="no SecretString"):
        source("rds/bin").fetch()


def test_missing_secret(aws_env: dict[str, str]) -> None:
    with pytest.raises(errors.CredentialsError, match=r"ResourceNotFoundException.*name or ARN"):
        source("rds/nowhere").fetch()


def test_unreachable_secrets_manager(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr("securedb.credentials.aws._session", None)
    with pytest.raises(errors.CredentialsError, match="cannot reach"):
        source("rds/any").fetch()


def test_region_from_aws_region_alone(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lambda sets AWS_REGION; botocore reads only AWS_DEFAULT_REGION."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setattr("securedb.credentials.aws._session", None)
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="rds/region", SecretString=json.dumps(GOOD)
    )
    assert SecretSource("rds/region", None, 3600).fetch().user == "app"


CONTAINER_SECRET_KEY = "container-secret-access-key-for-secrets"


class CutShortContainerCredentials(http.server.BaseHTTPRequestHandler):
    """A container credentials endpoint whose every answer is a document cut short."""

    def do_GET(self) -> None:
        whole = json.dumps({"AccessKeyId": "ASIACUT", "SecretAccessKey": CONTAINER_SECRET_KEY})
        body = whole[:-1].encode()  # no closing brace: botocore logs the document
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads log records."""


def test_credential_chain_failure_is_translated_and_not_logged(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A new client resolves AWS credentials: botocore logs the endpoint's body, and fails."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr("securedb.credentials.aws._session", None)
    monkeypatch.setattr(botocore.utils.ContainerMetadataFetcher, "SLEEP_TIME", 0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutShortContainerCredentials)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    monkeypatch.setenv(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{server.server_port}/creds"
    )
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(errors.CredentialsError, match="from container-role") as caught:
            source("rds/any").fetch()
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    logging.getLogger("botocore.utils").debug("canary")  # the capture sees botocore's loggers
    assert caplog.records[-1].getMessage() == "canary"
    for record in caplog.records:
        assert CONTAINER_SECRET_KEY not in f"{record.getMessage()} {record.args!r}"
    assert CONTAINER_SECRET_KEY not in caplog.text
