"""The token verifier's rules, checked against tokens botocore itself mints (no server)."""

from __future__ import annotations

import ast
import datetime
import random
import sys
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


# Tokens checked by `verify` are signed at a fixed time and checked a minute later, so
# each is the same on every run and none expires however long the session runs.
SIGNED_AT = datetime.datetime(2026, 1, 15, 12, 0, 0, tzinfo=datetime.timezone.utc)
NOW = SIGNED_AT.timestamp() + 60


def mint(host: str = HOST, port: int = PORT, user: str = USER, **kwargs: Any) -> str:
    return tokens.mint(host, port, user, **{"signed_at": SIGNED_AT, **kwargs})


def check(token: str, user: str = USER, now: float = NOW) -> str | None:
    return verifier.verify(token, user, CONF, "pg", now)


def bad_signature(token: str) -> str:
    """`token` with the last hex digit of its signature changed (never to itself)."""
    last = token[-1]
    return token[:-1] + ("0" if last != "0" else "1")


def test_valid_token() -> None:
    assert check(mint()) is None


def test_session_token_of_1_5_kb() -> None:
    token = mint(session_token="IQoJb3JpZ2luX2VjE/+=" * 80)
    assert len(token) > 1500
    assert check(token) is None


def test_host_is_case_insensitive() -> None:
    assert check(mint(HOST.upper())) is None


def test_localhost_endpoint() -> None:
    assert check(mint("localhost", 5432)) is None


def test_default_https_port_is_left_out_of_the_signed_host() -> None:
    """botocore signs `host` without `:443`, though the token keeps it."""
    conf = {**CONF, "groups": {"pg": [f"{HOST}:443"]}}
    token = mint(HOST, 443)
    assert token.startswith(f"{HOST}:443/?")
    assert verifier.verify(token, USER, conf, "pg", NOW) is None


def replace_param(token: str, name: str, value: str) -> str:
    head, _, query = token.partition("/?")
    parts = [p if not p.startswith(f"{name}=") else f"{name}={value}" for p in query.split("&")]
    return f"{head}/?{'&'.join(parts)}"


GOOD = mint()
PAST = SIGNED_AT - datetime.timedelta(seconds=901)


@pytest.mark.parametrize(
    ("token", "user", "reason"),
    [
        (bad_signature(GOOD), USER, "signature"),
        (replace_param(GOOD, "DBUser", "admin"), "admin", "signature"),
        (GOOD, "app_user", "user"),
        (mint("other.example.com"), USER, "endpoint"),
        (mint(HOST, 5433), USER, "endpoint"),
        (mint(access_key="AKIAUNKNOWN000000000"), USER, "unknown_key"),
        (mint(secret_key="wrong-secret"), USER, "signature"),
        (mint(signed_at=PAST), USER, "expired"),
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
        (f"{HOST}:{PORT}/?Action=connect&DBUser={USER}", USER, "malformed"),
        (f"{HOST}:5433/?Action=connect&DBUser={USER}", USER, "malformed"),
        (GOOD.replace("&X-Amz-Expires=900", ""), USER, "malformed"),
        (GOOD.rsplit("&X-Amz-Signature=", 1)[0], USER, "malformed"),
        (replace_param(GOOD, "DBUser", f"{USER}%zz"), f"{USER}%zz", "malformed"),
        (replace_param(GOOD, "X-Amz-Expires", "9_00"), USER, "malformed"),
        (
            replace_param(GOOD, "X-Amz-Date", GOOD.split("X-Amz-Date=")[1][:8] + "T250000Z"),
            USER,
            "malformed",
        ),
        (replace_param(GOOD, "X-Amz-Signature", "%C3%A9"), USER, "signature"),
        (replace_param(GOOD, "X-Amz-SignedHeaders", "host%3Bx-amz-date"), USER, "signed_headers"),
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
    assert check(GOOD, now=NOW - 3600) == "not_yet_valid"


def mangle(token: str, rng: random.Random) -> str:
    """`token` with one character replaced by another that is not the same letter.

    Host names and %-escapes are case-insensitive, so a change of case alone may leave
    an equivalent, valid token: such a change is not a mangling.
    """
    position = rng.randrange(len(token))
    while True:
        char = chr(rng.randrange(0x20, 0x3000))
        if char.lower() != token[position].lower():
            return token[:position] + char + token[position + 1 :]


def test_mangled_tokens_get_a_reason_and_never_raise() -> None:
    rng = random.Random(0)
    mangled = [GOOD[:i] for i in range(len(GOOD))]
    mangled += [mangle(GOOD, rng) for _ in range(2000)]
    reasons = {check(token) for token in mangled}
    assert None not in reasons
    assert all(isinstance(r, str) and r.isidentifier() for r in reasons), reasons


class FakePam:
    """pam_python's handle, reduced to what the module uses (pure logic, no PAM stack)."""

    PAM_SUCCESS, PAM_AUTH_ERR, PAM_PROMPT_ECHO_OFF = 0, 7, 1

    def __init__(self, user: str, token: str, *, authtok: str | None = None) -> None:
        self.user, self.token, self.authtok = user, token, authtok
        self.prompts: list[str] = []

    def get_user(self, prompt: Any) -> str:
        return self.user

    class Message:
        def __init__(self, style: int, text: str) -> None:
            self.style, self.text = style, text

    def conversation(self, message: Any) -> Any:
        assert message.style == self.PAM_PROMPT_ECHO_OFF
        self.prompts.append(message.text)
        return type("Response", (), {"resp": self.token})()


def authenticate(pamh: FakePam, conf_path: Path, group: str = "pg") -> int:
    result: int = verifier.pam_sm_authenticate(pamh, 0, ["verifier.py", str(conf_path), group])
    return result


def write_conf(folder: Path, name: str = "verifier.json", conf: dict = CONF) -> Path:
    path = folder / name
    path.write_text(verifier.json.dumps(conf))
    return path


SESSION_TOKEN = "IQoJb3JpZ2luX2VjE/+=" * 80


def fresh(session_token: str | None = None) -> str:
    """A token signed now: the PAM entry point checks it against the real clock."""
    return tokens.mint(HOST, PORT, USER, session_token=session_token)


@pytest.mark.parametrize(
    ("make", "expected", "logged"),
    [
        (fresh, FakePam.PAM_SUCCESS, "ok"),
        (lambda: fresh(SESSION_TOKEN), FakePam.PAM_SUCCESS, "ok"),
        (lambda: bad_signature(fresh()), FakePam.PAM_AUTH_ERR, "signature"),
        (
            lambda: replace_param(fresh(SESSION_TOKEN), "X-Amz-Expires", "3600"),
            FakePam.PAM_AUTH_ERR,
            "expires_too_long",
        ),
    ],
    ids=["valid", "session_token", "signature", "expires_too_long"],
)
@pytest.mark.parametrize("via_conversation", [True, False])
def test_pam_entry_point_logs_reason_not_token(
    tmp_path: Path, make: Any, expected: int, logged: str, via_conversation: bool
) -> None:
    token = make()
    pamh = FakePam(USER, token, authtok=None if via_conversation else token)
    assert authenticate(pamh, write_conf(tmp_path)) == expected
    assert pamh.prompts == (["Password: "] if via_conversation else [])
    log = (tmp_path / "verifier.log").read_text()
    assert log.count("\n") == 1
    assert log.rstrip().endswith(f"pg {USER} {logged}")
    for secret in ("X-Amz", "Amz", token.rsplit("=", 1)[-1], ACCESS_KEY_ID, "IQoJb3"):
        assert secret not in log


def test_pam_without_configuration_refuses(tmp_path: Path) -> None:
    assert authenticate(FakePam(USER, GOOD), tmp_path / "absent.json") == FakePam.PAM_AUTH_ERR
    assert (tmp_path / "verifier.log").read_text().rstrip().endswith(f"pg {USER} no_conf")


def test_pam_error_logs_exception_type_only(tmp_path: Path) -> None:
    class Broken(FakePam):
        def get_user(self, prompt: Any) -> str:
            raise RuntimeError(GOOD)

    assert authenticate(Broken(USER, GOOD), write_conf(tmp_path)) == FakePam.PAM_AUTH_ERR
    log = (tmp_path / "verifier.log").read_text()
    assert log.rstrip().endswith("pg ? error:RuntimeError")
    assert "Amz" not in log


def test_pam_log_keeps_a_hostile_user_name_on_one_line(tmp_path: Path) -> None:
    assert authenticate(FakePam("a b\nc", fresh()), write_conf(tmp_path)) == FakePam.PAM_AUTH_ERR
    assert (tmp_path / "verifier.log").read_text().splitlines()[-1].endswith(" pg a?b?c user")


def test_pam_shared_directory_accepts_what_any_bed_accepts(tmp_path: Path) -> None:
    """PgBouncer's service points at a directory holding each running bed's configuration."""
    other = {**CONF, "access_keys": {"AKIAOTHERBED00000000": "other-secret"}}
    write_conf(tmp_path, "a.json", other)
    write_conf(tmp_path, "b.json")
    token = fresh()
    assert authenticate(FakePam(USER, token), tmp_path) == FakePam.PAM_SUCCESS
    assert authenticate(FakePam("app_user", token), tmp_path) == FakePam.PAM_AUTH_ERR
    lines = (tmp_path / "verifier.log").read_text().splitlines()
    assert lines[0].endswith(f"pg {USER} ok")
    assert lines[1].endswith("pg app_user user")


def test_pam_other_entry_points_succeed() -> None:
    pamh = FakePam(USER, GOOD)
    assert verifier.pam_sm_setcred(pamh, 0, []) == FakePam.PAM_SUCCESS
    assert verifier.pam_sm_acct_mgmt(pamh, 0, []) == FakePam.PAM_SUCCESS


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
