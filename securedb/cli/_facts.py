"""What ``securedb check`` tells about credentials besides fetching them.

Where the AWS keys came from, and a secret's rotation state from DescribeSecret (which
never returns a value). Both are best-effort details: the check needs neither.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from securedb.config import Config, region_from_host

__all__ = ["key_source", "secret_facts", "secret_region"]


def key_source() -> str:
    """Where the AWS keys that signed the token come from, as `IamTokenSource` picks them."""
    env = os.environ
    if (
        env.get("AWS_ACCESS_KEY_ID")
        and env.get("AWS_SECRET_ACCESS_KEY")
        and not env.get("AWS_PROFILE")
    ):
        return "the environment"
    from securedb.credentials import aws

    try:
        with aws.quiet():
            found = aws.session().get_credentials()
    except Exception:  # the token is signed already; this is only a detail
        return "the AWS credential chain"
    return f"botocore's {found.method!r} provider" if found is not None else "nowhere"


def secret_facts(cfg: Config) -> str:
    """Rotation facts from DescribeSecret (no value), if this identity may read them."""
    from securedb.credentials import aws

    try:
        region = aws.region_or_default(secret_region(cfg), "the secret")
        with aws.quiet():
            client: Any = aws.session().create_client("secretsmanager", region_name=region)
            facts = client.describe_secret(SecretId=cfg.secret_id)
    except Exception:  # DescribeSecret is optional; the check needs only GetSecretValue
        return ""
    parts = []
    changed = facts.get("LastRotatedDate") or facts.get("LastChangedDate")
    if changed is not None:
        days = (datetime.datetime.now(datetime.timezone.utc) - changed).days
        parts.append(f"last changed {days} days ago")
    rules = facts.get("RotationRules", {})
    every = rules.get("AutomaticallyAfterDays") or rules.get("ScheduleExpression")
    parts.append(
        f"rotation on, every {every} days" if facts.get("RotationEnabled") else "rotation off"
    )
    stages = facts.get("VersionIdsToStages", {})
    if any("AWSPENDING" in s and "AWSCURRENT" not in s for s in stages.values()):
        parts.append("an AWSPENDING version exists: a rotation is running or half done")
    return "; " + ", ".join(parts)


def secret_region(cfg: Config) -> str | None:
    """As for fetching: the region option, else the ARN's, else the endpoint name's."""
    parts = (cfg.secret_id or "").split(":")
    arn_region = parts[3] if parts[0] == "arn" and len(parts) > 3 else None
    return cfg.region or arn_region or region_from_host(cfg.host)
