"""A static password, for local development."""

from __future__ import annotations

from securedb.credentials.base import Credential

__all__ = ["StaticSource"]


class StaticSource:
    kind = "password"

    def __init__(self, user: str, password: str) -> None:
        self.name = f"password for {user}"
        self._credential = Credential(user=user, password=password, version="static")

    def fetch(self, rejected: Credential | None = None) -> Credential:
        return self._credential
