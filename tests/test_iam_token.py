"""The local token signer: what it makes is what RDS (the bed's verifier) accepts."""

from __future__ import annotations

import datetime
import http.server
import json
import logging
import pathlib
import threading
import time
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

import botocore.loaders
import botocore.session
import botocore.utils
import pytest

import securedb
from bed import tokens, verifier
from bed.bed import Bed
from bed.moto import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from securedb import errors
from securedb.credentials import aws
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


@pytest.mark.parametrize("ttl", [10, 900])
def test_ttl_is_the_tokens_expiry(aws_keys: None, ttl: int) -> None:
    """A token asks RDS for `ttl` seconds from its signing second; securedb stops handing
    it out before RDS would refuse it (X-Amz-Date is truncated to the second, and a login
    takes time), and replaces it two thirds into that life."""
    signed = 5000.0
    source = IamTokenSource(HOST, 5432, "iam_user", "us-east-1", ttl, clock=lambda: signed)
    cred = source.fetch()
    assert parse_qs(cred.password.partition("?")[2])["X-Amz-Expires"] == [str(ttl)]
    life = cred.expires_at - signed
    assert ttl * 3 / 4 - 1 <= life <= ttl - 1
    assert cred.refresh_at - signed == pytest.approx(life * 2 / 3)


def test_user_names_are_quoted(aws_keys: None) -> None:
    token = IamTokenSource(HOST, 5432, "app user+1", "us-east-1", 900).fetch().password
    assert "DBUser=app%20user%2B1" in token
    assert verifier.verify(token, "app user+1", CONF, "pg", time.time()) is None


def test_no_service_model_is_loaded(aws_keys: None, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    original = botocore.loaders.Loader.load_service_model

    def spy(self: botocore.loaders.Loader, service_name: str, *args: Any, **kwargs: Any) -> object:
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


WHEN = datetime.datetime(2026, 11, 25, 3, 4, 5, tzinfo=datetime.timezone.utc)
# (host as securedb has it from the URL, port, the same host as botocore takes it: IPv6 bracketed)
ENDPOINTS = [
    (HOST, 5432, HOST),
    ("MyDB.Example.COM", 5432, "MyDB.Example.COM"),
    ("127.0.0.1", 5432, "127.0.0.1"),
    (HOST, 443, HOST),  # botocore signs the host without https's default port
    ("MyDB.Example.COM", 443, "MyDB.Example.COM"),
    ("::1", 5432, "[::1]"),
    ("2001:DB8::1", 443, "[2001:DB8::1]"),
    ("[2001:db8::1]", 5432, "[2001:db8::1]"),
    ("fe80::1%25ETH0", 5432, "[fe80::1%25ETH0]"),  # a zone keeps its case in the host header
    ("::ffff:127.0.0.1", 5432, "[::ffff:127.0.0.1]"),
]


@pytest.mark.parametrize("session_token", [None, "IQoJb3JpZ2luX2VjE/+=" * 80])
@pytest.mark.parametrize(("host", "port", "botocore_host"), ENDPOINTS)
def test_same_token_as_botocore(
    host: str, port: int, botocore_host: str, session_token: str | None
) -> None:
    """Signed at the same second with the same keys, the token is botocore's, byte for byte."""
    keys = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, session_token)
    ours = presign(host, port, "app user+1", "eu-west-2", keys, 900, WHEN)
    theirs = tokens.mint(
        botocore_host,
        port,
        "app user+1",
        session_token=session_token,
        signed_at=WHEN,
        region="eu-west-2",
    )
    assert ours == theirs


def test_port_443_is_verified_as_botocore_signs_it(aws_keys: None) -> None:
    conf = {**CONF, "groups": {"pg": [f"{HOST}:443"]}}
    token = IamTokenSource(HOST, 443, "iam_user", "us-east-1", 900).fetch().password
    assert token.startswith(f"{HOST}:443/?")
    assert verifier.verify(token, "iam_user", conf, "pg", time.time()) is None


ENVIRONMENTS = {
    "AWS_SECURITY_TOKEN alone": {"AWS_SECURITY_TOKEN": "security-token-1"},
    "AWS_SESSION_TOKEN alone": {"AWS_SESSION_TOKEN": "session-token-2"},
    "both, botocore reads the older first": {
        "AWS_SECURITY_TOKEN": "security-token-3",
        "AWS_SESSION_TOKEN": "session-token-4",
    },
    "neither": {},
}


@pytest.mark.parametrize("case", ENVIRONMENTS)
def test_session_token_from_the_environment_as_botocore_reads_it(
    aws_keys: None, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    for name in ("AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in ENVIRONMENTS[case].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    keys = IamTokenSource(HOST, 5432, "iam_user", "eu-west-2", 900)._keys()
    ours = presign(HOST, 5432, "iam_user", "eu-west-2", keys, 900, WHEN)
    rds: Any = botocore.session.Session().create_client("rds", region_name="eu-west-2")
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        theirs = rds.generate_db_auth_token(HOST, 5432, "iam_user", "eu-west-2")
    assert ours == theirs


CONTAINER_KEY_ID = "ASIASECUREDBCONTAINER"
CONTAINER_SECRET_KEY = "container-secret-access-key-0123456789"
CONTAINER_SESSION_TOKEN = "container-session-token-" + "Zm9v" * 100
CONTAINER_AUTHORIZATION = "container-authorization-token-42"
WEB_IDENTITY_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwIn0.c2lnLTQy"


class ContainerCredentials(http.server.BaseHTTPRequestHandler):
    """ECS's container credentials endpoint; its first answer is a document cut short."""

    answered = 0

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != CONTAINER_AUTHORIZATION:
            self.send_error(401)
            return
        type(self).answered += 1
        body = json.dumps(
            {
                "AccessKeyId": CONTAINER_KEY_ID,
                "SecretAccessKey": CONTAINER_SECRET_KEY,
                "Token": CONTAINER_SESSION_TOKEN,
                # An hour from the clock of the moment, whatever the date: botocore
                # refreshes credentials that expire within 15 minutes.
                "Expiration": (
                    datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
                ).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ).encode()
        if self.answered == 1:
            body = body[:-1]  # no closing brace: botocore logs the document, and retries
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads log records."""


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the environment or files: botocore's chain goes on to the next provider."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr("securedb.credentials.aws._session", None)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record's message and arguments, and the captured text with its tracebacks.

    First a record from botocore's credential logger, outside securedb, must be captured:
    so what is missing was dropped by securedb's filter, not by the capture's level.
    """
    logging.getLogger("botocore.credentials").debug("canary %s", "record")
    assert caplog.records[-1].getMessage() == "canary record"
    texts = [f"{r.getMessage()}\n{r.args!r}" for r in caplog.records]
    return "\n".join([*texts, caplog.text])


def test_container_credentials_never_logged(
    no_aws_credentials: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ECS: botocore fetches the keys from the container endpoint, retrying a bad answer."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ContainerCredentials)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    monkeypatch.setattr(ContainerCredentials, "answered", 0)
    monkeypatch.setattr(botocore.utils.ContainerMetadataFetcher, "SLEEP_TIME", 0)
    monkeypatch.setenv(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{server.server_port}/creds"
    )
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_AUTHORIZATION)
    caplog.set_level(logging.DEBUG)
    try:
        token = IamTokenSource(HOST, 5432, "iam_user", "us-east-1", 900).fetch().password
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
    assert ContainerCredentials.answered == 2  # the cut document, then the whole one
    conf = {**CONF, "access_keys": {CONTAINER_KEY_ID: CONTAINER_SECRET_KEY}}
    assert verifier.verify(token, "iam_user", conf, "pg", time.time()) is None
    assert parse_qs(token.partition("?")[2])["X-Amz-Security-Token"] == [CONTAINER_SESSION_TOKEN]
    text = logged(caplog)
    for secret in (CONTAINER_SECRET_KEY, CONTAINER_SESSION_TOKEN, CONTAINER_AUTHORIZATION):
        assert secret not in text


@pytest.mark.bed
def test_web_identity_credentials_never_logged(
    aws_env: dict[str, str],
    no_aws_credentials: None,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EKS IRSA: a JWT exchanged at STS (the bed's moto) for temporary keys."""
    jwt_file = tmp_path / "token"
    jwt_file.write_text(WEB_IDENTITY_JWT)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(jwt_file))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app")
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "securedb-test")
    caplog.set_level(logging.DEBUG)
    token = IamTokenSource(HOST, 5432, "iam_user", "us-east-1", 900).fetch().password
    text = logged(caplog)
    resolved = aws.session().get_credentials()
    assert resolved is not None
    served = resolved.get_frozen_credentials()  # what STS served, cached by botocore
    assert served.access_key != ACCESS_KEY_ID
    assert served.secret_key
    assert served.token
    query = parse_qs(token.partition("?")[2])
    assert query["X-Amz-Credential"][0].split("/")[0] == served.access_key
    assert query["X-Amz-Security-Token"] == [served.token]
    for secret in (served.secret_key, served.token, WEB_IDENTITY_JWT):
        assert secret not in text


PROFILE_CREDENTIALS = f"""\
[default]
aws_access_key_id = AKIANOTTHEPROFILEKEY
aws_secret_access_key = not-the-profile-secret-access-key-00000

[app]
aws_access_key_id = {ACCESS_KEY_ID}
aws_secret_access_key = {SECRET_ACCESS_KEY}
"""
PROFILE_CONFIG = """\
[default]
region = eu-west-1

[profile app]
region = us-east-1
"""


@pytest.mark.bed
def test_keys_from_an_aws_profile(
    bed: Bed,
    no_aws_credentials: None,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AWS_PROFILE names a profile of the shared files; its keys sign, the database agrees.

    Nothing is in the environment, and the default profile holds a key the bed does not
    know: only the named profile's key logs in.
    """
    (tmp_path / "credentials").write_text(PROFILE_CREDENTIALS)
    (tmp_path / "config").write_text(PROFILE_CONFIG)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "app")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    url = f"postgresql://iam_user@localhost:{bed.primary.port}/app"
    with securedb.connect(url, auth="iam", ca_bundle=str(bed.pki.ca)) as conn:
        user = conn.execute("SELECT current_user").fetchone()
        query = parse_qs(conn.info.password.partition("?")[2])
    assert user == ("iam_user",)
    credential = query["X-Amz-Credential"][0].split("/")
    assert credential[0] == ACCESS_KEY_ID
    assert credential[2] == "us-east-1"  # the profile's region, from the config file
