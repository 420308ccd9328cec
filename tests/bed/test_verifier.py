"""The token verifier's rules, checked against tokens botocore itself mints (no server)."""

from __future__ import annotations

import ast
import datetime
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bed import tokens, verifier
from bed.moto import ACCESS_KEY_ID, SECRET_ACCESS_KEY

HOST, PORT, USER = "mydb.abc123.us-east-1.rds.amazonaws.com", 5432, "iam_user"
CONF = {
    "access_keys": {ACCESS_KEY_ID: SECRET_ACCESS_KEY},
    "groups": {"pg": [f"{HOST}:{PORT}", "localhost:5432"]},
    "max_expires": 900,
}


def check(token: str, user: str = USER, now: float | None = None) -> str | None:
    return verifier.verify(token, user, CONF, "pg", time.time() if now is None else now)


def test_valid_token() -> None:
    assert check(tokens.mint(HOST, PORT, USER)) is None


def test_session_token_of_1_5_kb() -> None:
    token = tokens.mint(HOST, PORT, USER, session_token="IQoJb3JpZ2luX2VjE/+=" * 80)
    assert len(token) > 1500
    assert check(token) is None


def test_host_is_case_insensitive() -> None:
    assert check(tokens.mint(HOST.upper(), PORT, USER)) is None


def replace_param(token: str, name: str, value: str) -> str:
    head, _, query = token.partition("/?")
    parts = [p if not p.startswith(f"{name}=") else f"{name}={value}" for p in query.split("&")]
    return f"{head}/?{'&'.join(parts)}"


GOOD = tokens.mint(HOST, PORT, USER)
PAST = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=901)


@pytest.mark.parametrize(
    ("token", "user", "reason"),
    [
        (GOOD[:-1] + ("0" if GOOD[-1] != "0" else "1"), USER, "signature"),
        (replace_param(GOOD, "DBUser", "admin"), "admin", "signature"),
        (GOOD, "app_user", "user"),
        (tokens.mint("other.example.com", PORT, USER), USER, "endpoint"),
        (tokens.mint(HOST, 5433, USER), USER, "endpoint"),
        (tokens.mint(HOST, PORT, USER, access_key="AKIAUNKNOWN000000000"), USER, "unknown_key"),
        (tokens.mint(HOST, PORT, USER, secret_key="wrong-secret"), USER, "signature"),
        (tokens.mint(HOST, PORT, USER, signed_at=PAST), USER, "expired"),
        (replace_param(GOOD, "X-Amz-Expires", "3600"), USER, "expires_too_long"),
        (replace_param(GOOD, "X-Amz-Expires", "0"), USER, "expires_too_long"),
        (replace_param(GOOD, "Action", "disconnect"), USER, "action"),
        (replace_param(GOOD, "X-Amz-Algorithm", "AWS4-HMAC-SHA1"), USER, "algorithm"),
        (GOOD.replace("%2Frds-db%2F", "%2Frds%2F"), USER, "service"),
        (replace_param(GOOD, "X-Amz-Date", "20200101T000000Z"), USER, "credential"),
        ("", USER, "malformed"),
        ("hunter2", USER, "malformed"),
        (f"{HOST}:{PORT}/?", USER, "malformed"),
        (f"{HOST}:{PORT}/?Action=connect&&DBUser={USER}", USER, "malformed"),
        (f"{HOST}:{PORT}/?Action=connect&DBUser={USER}", USER, "algorithm"),
        (f"{HOST}:5433/?Action=connect&DBUser={USER}", USER, "endpoint"),
        (
            f"localhost:5432/?Action=connect&DBUser={USER}&X-Amz-Algorithm=AWS4-HMAC-SHA256",
            USER,
            "malformed",
        ),
        (GOOD + "&DBUser=" + USER, USER, "malformed"),
        ("localhost:5432/?Action=connect&DBUser=%ff", USER, "malformed"),
    ],
)
def test_refusals(token: str, user: str, reason: str) -> None:
    assert check(token, user) == reason


def test_not_yet_valid() -> None:
    assert check(GOOD, now=time.time() - 3600) == "not_yet_valid"


class FakePam:
    """pam_python's handle, reduced to what the module uses (pure logic, no PAM stack)."""

    PAM_SUCCESS, PAM_AUTH_ERR, PAM_PROMPT_ECHO_OFF = 0, 7, 1

    def __init__(self, user: str, token: str) -> None:
        self.user, self.token, self.authtok = user, token, None

    def get_user(self, prompt: Any) -> str:
        return self.user

    class Message:
        def __init__(self, style: int, text: str) -> None:
            self.style, self.text = style, text

    def conversation(self, message: Any) -> Any:
        return type("Response", (), {"resp": self.token})()


@pytest.mark.parametrize(
    ("token", "expected", "logged"),
    [
        (GOOD, FakePam.PAM_SUCCESS, "ok"),
        (GOOD[:-2] + "00", FakePam.PAM_AUTH_ERR, "signature"),
    ],
)
def test_pam_entry_point_logs_reason_not_token(
    tmp_path: Path, token: str, expected: int, logged: str
) -> None:
    conf = tmp_path / "verifier.json"
    conf.write_text(verifier.json.dumps(CONF))
    result = verifier.pam_sm_authenticate(FakePam(USER, token), 0, ["verifier.py", str(conf), "pg"])
    assert result == expected
    log = (tmp_path / "verifier.log").read_text()
    assert log.rstrip().endswith(f"pg {USER} {logged}")
    assert "X-Amz" not in log
    assert token.rsplit("=", 1)[-1] not in log


def test_stdlib_only() -> None:
    """pam_python runs it with the system Python: no third-party import may creep in."""
    tree = ast.parse(Path(verifier.__file__).read_text())
    names = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    names |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert names <= set(sys.stdlib_module_names) | {"__future__"}
