"""``securedb token URL``: print one IAM auth token, for another client's password.

    URL=postgresql://app@mydb.abc123.eu-west-2.rds.amazonaws.com/app
    PGPASSWORD="$(securedb token "$URL")" psql ...

The token is signed locally for the URL's host and port, the real endpoint, even with
``--tunnel`` (RDS checks the name the token was signed for). Standard output holds the
token and a newline, nothing else; errors go to stderr (exit 1; 2 for bad options).
"""

from __future__ import annotations

import argparse
import os
import sys

from securedb.cli._options import add_config_flags, config_from
from securedb.errors import ConfigError

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "token",
        help="print an IAM auth token (one line, nothing else)",
        description="Print one IAM database auth token for the URL's endpoint and user, "
        "signed locally with the standard AWS credential chain. --auth defaults to iam.",
    )
    add_config_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from securedb.credentials import cache_for

    auth_given = args.auth is not None or os.environ.get("SECUREDB_AUTH")
    cfg = config_from(args, defaults={} if auth_given else {"auth": "iam"})
    if cfg.auth != "iam":
        raise ConfigError(
            f"securedb token prints IAM auth tokens, and the auth mode here is {cfg.auth!r}; "
            "use --auth iam (for a secret, let securedb shell or securedb.connect read it)"
        )
    cache = cache_for(cfg)
    try:
        token = cache.get().password
    finally:
        cache.close()
    sys.stdout.write(f"{token}\n")
    sys.stdout.flush()
    return 0
