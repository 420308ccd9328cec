"""Database credentials from AWS Secrets Manager, RDS-managed secrets included.

The secret's ``SecretString`` is a JSON object with ``username`` and ``password``; an
RDS-managed secret also carries ``engine``, ``host``, ``port`` and ``dbname``.

Rotation follows AWS's four steps. Between ``setSecret`` (the database already wants
the new password) and ``finishSecret`` (``AWSCURRENT`` moves to it) the new password is
only under ``AWSPENDING``: so when the database refuses the current version, the source
reads ``AWSCURRENT`` again and, if that is the version just refused, ``AWSPENDING``.

A forked child drops the botocore clients it inherited and makes its own on first use:
the parent's connection pool, and any lock held by a parent's thread, are not its own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from securedb import _state
from securedb.credentials import aws
from securedb.credentials.base import Credential
from securedb.errors import CredentialsError

__all__ = ["SecretSource", "parse_secret"]

PENDING_TTL = 30.0  # a pending version is served briefly: finishSecret is on its way
REQUIRED_KEYS = ("username", "password")


class SecretSource:
    kind = "secret"

    def __init__(
        self,
        secret_id: str,
        region: str | None,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret_id, self.ttl = secret_id, ttl
        self.name = f"secret {secret_id!r}"
        self._region = region
        self._clock = clock
        self._client: Any = None
        self._client_lock = threading.Lock()
        _state.track(self)

    def fetch(self, rejected: Credential | None = None) -> Credential:
        current = self._read("AWSCURRENT")
        if rejected is not None and current is not None and current.version == rejected.version:
            pending = self._read("AWSPENDING")
            if pending is not None and pending.version != rejected.version:
                return Credential(
                    pending.user,
                    pending.password,
                    self._clock() + PENDING_TTL,
                    version=pending.version,
                    fields=pending.fields,
                )
        if current is None:
            raise CredentialsError(f"{self.name} has no AWSCURRENT version")
        return current

    def _read(self, stage: str) -> Credential | None:
        """One stage of the secret, or None if that stage does not exist."""
        import botocore.exceptions

        try:
            with aws.quiet():  # a new client runs the credential chain; the response is secret
                client = self._get_client()
                response = client.get_secret_value(SecretId=self.secret_id, VersionStage=stage)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if stage != "AWSCURRENT" and code == "ResourceNotFoundException":
                return None
            raise aws.translate(exc, self._not_read(stage)) from None
        except CredentialsError:
            raise  # no region: it says what to do
        except Exception as exc:  # (botocore's errors are translated in one place)
            raise aws.translate(exc, self._not_read(stage)) from None
        fields = parse_secret(response.get("SecretString"), self.name)
        return Credential(
            user=str(fields.pop("username")),
            password=str(fields.pop("password")),
            refresh_at=self._clock() + self.ttl,
            version=str(response.get("VersionId")),
            fields=fields,
        )

    def _not_read(self, stage: str) -> str:
        """What failed, naming a stage other than AWSCURRENT and why it was read.

        A policy may allow GetSecretValue for AWSCURRENT only: then the error must say
        that reading AWSPENDING, not the secret as a whole, is what was denied.
        """
        if stage == "AWSCURRENT":
            return f"{self.name} not read"
        return (
            f"{self.name} not read at {stage}, which rotation needs once the database "
            "has refused AWSCURRENT"
        )

    def close(self) -> None:
        """Close the Secrets Manager client's HTTP connections; a later fetch makes another.

        No lock: a finalizer can close the source while this thread creates its client.
        """
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _get_client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    region = aws.region_or_default(self._region, self.name)
                    self._client = aws.session().create_client("secretsmanager", region_name=region)
        return self._client

    def after_fork(self) -> None:
        """In a forked child, drop the parent's client: its HTTP connections are the parent's."""
        self._client, self._client_lock = None, threading.Lock()


def parse_secret(text: Any, name: str) -> dict[str, Any]:
    """The secret's JSON fields, or a CredentialsError naming what is wrong (not the value)."""
    if not isinstance(text, str):
        raise CredentialsError(
            f"{name} has no SecretString; store the credentials as JSON "
            'like {"username": ..., "password": ...}'
        )
    try:
        fields = json.loads(text)
    except ValueError:
        raise CredentialsError(
            f"{name} is not JSON; store the credentials as JSON "
            'like {"username": ..., "password": ...}'
        ) from None
    if not isinstance(fields, dict):
        raise CredentialsError(f"{name} is JSON but not an object with username and password")
    missing = [k for k in REQUIRED_KEYS if not isinstance(fields.get(k), str) or not fields[k]]
    if missing:
        raise CredentialsError(f"{name} lacks {' and '.join(missing)} (a non-empty string)")
    return fields
