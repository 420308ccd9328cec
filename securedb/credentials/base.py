"""What every credential source returns, and the shape of a source."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

__all__ = ["Credential", "Source"]


@dataclasses.dataclass(frozen=True, slots=True)
class Credential:
    """A user and password, with when to refresh it and when it stops working.

    Times are on the `time.monotonic` clock. `version` identifies the value for logs
    and rotation (a secret's version id, a token's signing time), never the value.
    `fields` holds the rest of an RDS-managed secret (host, port, dbname, engine).
    """

    user: str
    password: str = dataclasses.field(repr=False)
    refresh_at: float = math.inf
    expires_at: float = math.inf
    version: str | None = None
    fields: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"Credential(user={self.user!r}, password=***, version={self.version!r})"


class Source(Protocol):
    """A place credentials come from: an IAM token signer, a secret, a static password."""

    name: str  # for logs: what and for whom, never a secret

    def fetch(self, rejected: Credential | None = None) -> Credential:
        """A fresh credential; `rejected` is the one the database just refused, if any."""
        ...
