"""The bed's stand-in for RDS IAM database authentication.

PostgreSQL, MariaDB and PgBouncer hand each login to PAM, and PAM runs this module
through pam_python inside the server process, with the system Python: so it uses the
standard library only. (pam_exec would do, but cuts the password at 511 bytes, and
tokens carrying a session token are 1-2 KB.)

A token is what `generate_db_auth_token` makes: a SigV4 presigned URL without its scheme,
`host:port/?Action=connect&DBUser=...&X-Amz-...`. It is accepted, as RDS does, only if
it is for `rds-db` and `Action=connect`, names the login user, names an endpoint of
this server (`host:port` as the client was configured), has not expired, and is signed
by a known access key. The log records the reason for each refusal, never the token.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import time
import urllib.parse

MAX_CLOCK_SKEW = 300
# botocore's SigV4QueryAuth keeps SigV4Auth's payload hash (only S3 presigns use
# UNSIGNED-PAYLOAD): the request is https with its body moved into the query, so sha256("").
EMPTY_PAYLOAD = hashlib.sha256(b"").hexdigest()
QUOTE_SAFE = "-_.~"
REQUIRED = (
    "Action",
    "DBUser",
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
STAMP = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z")
EXPIRES = re.compile(r"[0-9]{1,9}")


def verify(token: str, user: str, conf: dict, group: str, now: float) -> str | None:
    """Return None if `token` is valid for `user` on an endpoint of `group`, else why not."""
    endpoint, sep, query = token.partition("/?")
    endpoint = endpoint.lower()  # botocore signs the lowercased host
    if not sep or not endpoint or not query or BAD_ESCAPE.search(query):
        return "malformed"
    try:
        pairs = urllib.parse.parse_qsl(
            query, keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except (ValueError, UnicodeError):
        return "malformed"
    params = dict(pairs)
    if len(params) != len(pairs) or any(name not in params for name in REQUIRED):
        return "malformed"
    if params["Action"] != "connect":
        return "action"
    if params["DBUser"] != user:
        return "user"
    if endpoint not in {e.lower() for e in conf["groups"].get(group, ())}:
        return "endpoint"
    if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        return "algorithm"
    if params["X-Amz-SignedHeaders"] != "host":
        return "signed_headers"
    scope, stamp = params["X-Amz-Credential"].split("/"), params["X-Amz-Date"]
    if len(scope) != 5 or scope[1] != stamp[:8]:
        return "credential"
    key_id, day, region, service, terminator = scope
    if service != "rds-db" or terminator != "aws4_request":
        return "service"
    secret = conf["access_keys"].get(key_id)
    if secret is None:
        return "unknown_key"
    stamp_parts = STAMP.fullmatch(stamp)
    if not stamp_parts or not EXPIRES.fullmatch(params["X-Amz-Expires"]):
        return "malformed"
    try:  # not time.strptime: its lazy import is not thread-safe (MariaDB runs PAM in threads)
        fields = (int(f) for f in stamp_parts.groups())
        signed_at = datetime.datetime(*fields, tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return "malformed"
    expires = int(params["X-Amz-Expires"])
    if not 0 < expires <= conf.get("max_expires", 900):
        return "expires_too_long"
    if now >= signed_at + expires:
        return "expired"
    if signed_at > now + MAX_CLOCK_SKEW:
        return "not_yet_valid"
    expected = signature(secret, endpoint, pairs, stamp, day, region)
    if not hmac.compare_digest(expected.encode(), params["X-Amz-Signature"].encode()):
        return "signature"
    return None


def signature(
    secret: str, endpoint: str, pairs: list[tuple[str, str]], stamp: str, day: str, region: str
) -> str:
    """The SigV4 signature of a presigned GET to `endpoint` with these query parameters."""
    encoded = sorted(
        (urllib.parse.quote(k, safe=QUOTE_SAFE), urllib.parse.quote(v, safe=QUOTE_SAFE))
        for k, v in pairs
        if k != "X-Amz-Signature"
    )
    query = "&".join(f"{k}={v}" for k, v in encoded)
    host = endpoint.removesuffix(":443")  # botocore leaves the https default port out
    canonical = "\n".join(["GET", "/", query, f"host:{host}", "", "host", EMPTY_PAYLOAD])
    scope = f"{day}/{region}/rds-db/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (day, region, "rds-db", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def pam_sm_authenticate(pamh, flags, argv):
    conf_path, group = argv[1], argv[2]
    user, reason = "?", "error"
    try:
        user = pamh.get_user(None)
        token = pamh.authtok
        if token is None:
            message = pamh.Message(pamh.PAM_PROMPT_ECHO_OFF, "Password: ")
            token = pamh.conversation(message).resp
        reasons = [
            verify(token or "", user, conf, group, time.time()) for conf in _confs(conf_path)
        ]
        reason = "ok" if None in reasons else (reasons[0] if reasons else "no_conf")
    except Exception as exc:
        reason = f"error:{type(exc).__name__}"  # never the message: it could quote the token
    _log(conf_path, group, user, reason)
    return pamh.PAM_SUCCESS if reason == "ok" else pamh.PAM_AUTH_ERR


def pam_sm_setcred(pamh, flags, argv):
    return pamh.PAM_SUCCESS


def pam_sm_acct_mgmt(pamh, flags, argv):
    return pamh.PAM_SUCCESS


def _confs(conf_path: str) -> list[dict]:
    """One configuration file, or every one in a directory (the beds sharing PgBouncer's)."""
    if os.path.isdir(conf_path):
        names = sorted(n for n in os.listdir(conf_path) if n.endswith(".json"))
        paths = [os.path.join(conf_path, n) for n in names]
    else:
        paths = [conf_path]
    confs = []
    for path in paths:
        try:
            with open(path) as f:
                confs.append(json.load(f))
        except (OSError, ValueError):
            continue  # a bed that just stopped
    return confs


def _log(conf_path: str, group: str, user: object, reason: str) -> None:
    """Append `time group user reason`; the user is the client's, so kept to one word."""
    name = "".join(c if c.isprintable() and not c.isspace() else "?" for c in str(user)[:64])
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {group} {name} {reason}\n"
    folder = conf_path if os.path.isdir(conf_path) else os.path.dirname(conf_path)
    try:
        with open(os.path.join(folder, "verifier.log"), "a") as f:
            f.write(line)
    except OSError:
        pass
