"""IAM auth tokens, signed locally: a SigV4 presigned ``connect`` for the ``rds-db`` service.

Signing needs only credentials from botocore's chain and its SigV4 signer; no service
model is loaded and nothing goes over the network. The token is valid for
`iam_token_ttl` seconds (at most 900) from its ``X-Amz-Date``, truncated to the second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

from securedb.credentials import aws
from securedb.credentials.base import Credential
from securedb.errors import CredentialsError

__all__ = ["IamTokenSource"]

REFRESH_FRACTION = 2 / 3  # refresh once two thirds of a token's life have passed


class IamTokenSource:
    """Tokens for `user` at `host:port`: the real endpoint, even through a tunnel."""

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
        from botocore.auth import SigV4QueryAuth
        from botocore.awsrequest import AWSRequest

        region = aws.region_or_default(self._region, self.name)
        try:
            credentials = aws.session().get_credentials()
            if credentials is None:
                raise CredentialsError(
                    f"{self.name} not signed: no AWS credentials found; set "
                    "AWS_PROFILE or the AWS_ACCESS_KEY_ID pair, or attach "
                    "an IAM role"
                )
            frozen = credentials.get_frozen_credentials()
        except CredentialsError:
            raise
        except Exception as exc:  # (botocore's errors are translated in one place)
            raise aws.translate(exc, f"{self.name} not signed") from None
        started = self._clock()
        request = AWSRequest(
            method="GET",
            url=f"https://{self.host}:{self.port}/?Action=connect"
            f"&DBUser={quote(self.user, safe='')}",
        )
        with aws.quiet():
            SigV4QueryAuth(frozen, "rds-db", region, expires=self.ttl).add_auth(request)
        token = request.url.removeprefix("https://")  # type: ignore[union-attr]
        life = self.ttl - 1  # X-Amz-Date is truncated to the second
        return Credential(
            user=self.user,
            password=token,
            refresh_at=started + life * REFRESH_FRACTION,
            expires_at=started + life,
            version=f"signed at {time.time():.0f}",
        )
