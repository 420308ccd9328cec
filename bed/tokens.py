"""IAM auth tokens minted with botocore itself, as RDS clients do, for the bed's tests."""

from __future__ import annotations

import datetime
from unittest import mock

import botocore.session

from bed.certs import REGION
from bed.moto import ACCESS_KEY_ID, SECRET_ACCESS_KEY


def mint(
    host: str,
    port: int,
    user: str,
    *,
    access_key: str = ACCESS_KEY_ID,
    secret_key: str = SECRET_ACCESS_KEY,
    session_token: str | None = None,
    signed_at: datetime.datetime | None = None,
    region: str = REGION,
) -> str:
    """A token from botocore's `generate_db_auth_token`, optionally signed at another time."""
    session = botocore.session.Session()
    session.set_credentials(access_key, secret_key, session_token)
    client = session.create_client("rds", region_name=region)
    if signed_at is None:
        return str(client.generate_db_auth_token(host, port, user, region))
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        return str(client.generate_db_auth_token(host, port, user, region))
