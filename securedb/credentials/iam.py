"""IAM auth tokens, signed locally: a SigV4 presigned ``connect`` for the ``rds-db`` service.

The token is ``host:port/?Action=connect&DBUser=...&X-Amz-...``, exactly what botocore's
``generate_db_auth_token`` makes (the tests compare the two), valid for `iam_token_ttl`
seconds (at most 900) from its ``X-Amz-Date``, truncated to the second. An IPv6 literal
is bracketed (``[::1]:5432/?...``, the form botocore needs); as in botocore, the signed
``host`` header is lowercased and leaves out port 443 (https's default), which the token
itself keeps.

Signing is a few HMACs, done here with the standard library: nothing is logged and no
botocore module is needed when the credentials are in the environment (as on Lambda,
ECS with env credentials, CI). Otherwise botocore's credential chain supplies them
(profile, SSO, container and instance roles, web identity); no service model is loaded.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote

from securedb.credentials import aws
from securedb.credentials.base import Credential
from securedb.errors import CredentialsError

__all__ = ["IamTokenSource", "presign"]

REFRESH_FRACTION = 2 / 3  # refresh once two thirds of a token's life have passed
# A token must still be valid when the server checks it, after the connection's TCP and
# TLS handshakes: it is not handed out in its last seconds (a quarter of a short life).
EXPIRY_MARGIN = 5.0
EMPTY_PAYLOAD = hashlib.sha256(b"").hexdigest()
HTTPS_PORT = 443  # botocore signs for https://host:port and leaves this default port out
AwsKeys = tuple[str, str, "str | None"]
CHAIN_KEYS = tuple(
    f"the AWS {key} from the credential chain"
    for key in ("access key id", "secret access key", "session token")
)


class IamTokenSource:
    """Tokens for `user` at `host:port`: the real endpoint, even through a tunnel."""

    kind = "iam"

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        region: str | None,
        ttl: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.port, self.user, self.ttl = host, port, user, ttl
        self.name = f"IAM token for {user}@{host}:{port}"
        self._region = region
        self._clock = clock

    def fetch(self, rejected: Credential | None = None) -> Credential:
        keys = self._keys()
        region = (
            self._region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or aws.region_or_default(None, self.name)
        )
        started = self._clock()
        now = datetime.datetime.now(datetime.timezone.utc)
        token = presign(self.host, self.port, self.user, region, keys, self.ttl, now)
        # X-Amz-Date is truncated to the second, and the login takes time.
        life = self.ttl - 1 - min(EXPIRY_MARGIN, self.ttl / 4)
        return Credential(
            user=self.user,
            password=token,
            refresh_at=started + life * REFRESH_FRACTION,
            expires_at=started + life,
            version=f"signed at {now:%H:%M:%S}",
        )

    def _keys(self) -> AwsKeys:
        """The environment's keys when botocore would pick them too, else botocore's chain.

        Raises:
            CredentialsError: no keys, or a key that is not ASCII (see `_refuse_non_ascii`).
        """
        env = os.environ
        if (
            env.get("AWS_ACCESS_KEY_ID")
            and env.get("AWS_SECRET_ACCESS_KEY")
            and not env.get("AWS_PROFILE")
        ):
            # botocore's EnvProvider reads the older name first
            token_name = (
                "AWS_SECURITY_TOKEN" if env.get("AWS_SECURITY_TOKEN") else "AWS_SESSION_TOKEN"
            )
            keys = (
                env["AWS_ACCESS_KEY_ID"],
                env["AWS_SECRET_ACCESS_KEY"],
                env.get(token_name) or None,
            )
            _refuse_non_ascii(
                keys, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", token_name), self.name
            )
            return keys
        try:
            with aws.quiet():  # STS, container and instance metadata responses hold keys
                credentials = aws.session().get_credentials()
                frozen = credentials.get_frozen_credentials() if credentials else None
        except Exception as exc:  # (botocore's errors are translated in one place)
            raise aws.translate(exc, f"{self.name} not signed") from None
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise CredentialsError(
                f"{self.name} not signed: no AWS credentials found; set AWS_PROFILE or the "
                "AWS_ACCESS_KEY_ID pair, or attach an IAM role"
            )
        keys = (str(frozen.access_key), str(frozen.secret_key), frozen.token)
        _refuse_non_ascii(keys, CHAIN_KEYS, self.name)
        return keys


def _refuse_non_ascii(keys: AwsKeys, names: tuple[str, ...], what: str) -> None:
    """A CredentialsError if a key is not ASCII, before anything is signed with it.

    AWS keys and session tokens are ASCII. A byte that is not valid UTF-8 in the
    environment comes back as a lone surrogate, which cannot be encoded at all: signing
    would fail with an encoding error that holds the key.
    """
    for value, name in zip(keys, names, strict=True):
        if value is not None and not value.isascii():
            raise CredentialsError(
                f"{what} not signed: {name} is not ASCII, which AWS keys and tokens always "
                "are (a stray byte or a wrong encoding?); set it again from the key's source"
            )


def presign(
    host: str,
    port: int,
    user: str,
    region: str,
    keys: AwsKeys,
    ttl: int,
    now: datetime.datetime,
) -> str:
    """The SigV4 presigned ``connect`` URL for ``rds-db``, without its scheme: the token."""
    access_key, secret_key, session_token = keys
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{region}/rds-db/aws4_request"
    params = {
        "Action": "connect",
        "DBUser": user,
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": str(ttl),
        "X-Amz-SignedHeaders": "host",
    }
    if session_token:
        params["X-Amz-Security-Token"] = session_token
    query = _query(params.items())  # the token keeps botocore's order; SigV4 signs it sorted
    signed, name = _query(sorted(params.items())), _bracketed(host)
    canonical = f"GET\n/\n{signed}\nhost:{_host_header(name, port)}\n\nhost\n{EMPTY_PAYLOAD}"
    to_sign = (
        f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, "rds-db", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{name}:{port}/?{query}&X-Amz-Signature={signature}"


def _query(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)


def _quote(value: str) -> str:
    return quote(value, safe="-_.~")


def _bracketed(host: str) -> str:
    """An IPv6 literal in brackets, as in a URL (``[::1]``); any other host as it is."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _host_header(host: str, port: int) -> str:
    """The signed ``host`` as botocore signs it: lowercased, without https's default port.

    Like `urllib.parse`, an IPv6 zone (``[fe80::1%25eth0]``) keeps its case.
    """
    address, percent, zone = host.partition("%")
    header = f"{address.lower()}{percent}{zone}"
    return header if port == HTTPS_PORT else f"{header}:{port}"
