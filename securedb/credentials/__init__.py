"""Credentials: a refresh-ahead cache over IAM token, Secrets Manager and static sources."""

from __future__ import annotations

from collections.abc import Hashable

from securedb.config import Config, region_from_host
from securedb.credentials.base import Credential, Source
from securedb.credentials.cache import RefreshAheadCache

__all__ = ["Credential", "RefreshAheadCache", "Source", "cache_for", "identity"]


def identity(cfg: Config) -> Hashable:
    """What makes two configurations share one credential cache.

    The source and how it refreshes: for a token the endpoint it is signed for (the real
    one, even through a tunnel), the user, region and lifetime; for a secret its id,
    region and lifetime; for a password the user and password. Per-connection things
    (dbname, driver arguments, TLS trust store, tunnel, timeouts) are not part of it.
    """
    if cfg.auth == "iam":
        assert cfg.host is not None
        region = cfg.region or region_from_host(cfg.host)
        return ("iam", cfg.host.lower(), cfg.port, cfg.user, region, cfg.iam_token_ttl, cfg.refresh)
    if cfg.auth == "secret":
        return (
            "secret",
            cfg.secret_id,
            cfg.region or _secret_region(cfg),
            cfg.secret_ttl,
            cfg.refresh,
        )
    return ("password", cfg.user, cfg.password)


def cache_for(cfg: Config) -> RefreshAheadCache:
    """The credential cache for `cfg`'s auth mode. Tokens name the real endpoint."""
    source: Source
    if cfg.auth == "iam":
        from securedb.credentials.iam import IamTokenSource

        assert cfg.host is not None
        assert cfg.port is not None
        assert cfg.user is not None
        source = IamTokenSource(
            cfg.host,
            cfg.port,
            cfg.user,
            cfg.region or region_from_host(cfg.host),
            cfg.iam_token_ttl,
        )
    elif cfg.auth == "secret":
        from securedb.credentials.secrets import SecretSource

        assert cfg.secret_id is not None
        source = SecretSource(cfg.secret_id, cfg.region or _secret_region(cfg), cfg.secret_ttl)
    else:
        from securedb.credentials.static import StaticSource

        assert cfg.user is not None
        assert cfg.password is not None
        source = StaticSource(cfg.user, cfg.password)
    return RefreshAheadCache(source, cfg.refresh if cfg.auth != "password" else "lazy")


def _secret_region(cfg: Config) -> str | None:
    """A secret's ARN names its region; else the endpoint's name may."""
    assert cfg.secret_id is not None
    if cfg.secret_id.startswith("arn:"):
        parts = cfg.secret_id.split(":")
        if len(parts) > 3 and parts[3]:
            return parts[3]
    return region_from_host(cfg.host)
