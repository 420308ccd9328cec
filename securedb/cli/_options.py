"""Flags that mirror `Config`'s options, and the configuration they make.

A flag wins over its ``SECUREDB_*`` variable, which wins over the default; the URL
argument wins over ``SECUREDB_URL``. Everything is validated by `Config` itself. On the
command line ``refresh`` defaults to ``lazy``: a one-shot command needs no refresher
thread.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from securedb.config import ENV_VARS, Config

__all__ = ["FLAGS", "add_config_flags", "config_from"]

# (flag, Config option, metavar, help)
FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("--auth", "auth", "MODE", "iam, secret or password (default: inferred from the others)"),
    ("--secret-id", "secret_id", "ID", "Secrets Manager secret name or ARN"),
    ("--region", "region", "REGION", "AWS region (default: from the endpoint name, then AWS)"),
    ("--ca-bundle", "ca_bundle", "PEM", "trust store (default: the bundled RDS CA bundle)"),
    (
        "--tunnel",
        "tunnel",
        "HOST:PORT",
        "local end of an SSM or SSH port forward; TLS and IAM still use the URL's host",
    ),
    ("--iam-token-ttl", "iam_token_ttl", "SECONDS", "IAM token lifetime, at most 900"),
    ("--secret-ttl", "secret_ttl", "SECONDS", "how long a fetched secret is served"),
    ("--connect-timeout", "connect_timeout", "SECONDS", "network timeout per step (default 5)"),
    ("--refresh", "refresh", "MODE", "background or lazy (default here: lazy)"),
)
ENV_OF = {option: variable for variable, option in ENV_VARS.items()}
CLI_DEFAULTS = {"refresh": "lazy"}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        help="postgresql://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB "
        "(default: $SECUREDB_URL; with --secret-id of an RDS-managed secret, none needed)",
    )
    group = parser.add_argument_group("connection options (or their SECUREDB_* variables)")
    for flag, option, metavar, text in FLAGS:
        group.add_argument(flag, dest=option, metavar=metavar, help=text)


def config_from(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Config:
    """The `Config` of the URL argument, the flags, the environment and `defaults`.

    Raises:
        ConfigError: an option is invalid; the message names it.
    """
    env = dict(os.environ if environ is None else environ)
    if args.url:
        env["SECUREDB_URL"] = args.url
    options = {opt: getattr(args, opt) for _, opt, _, _ in FLAGS if getattr(args, opt) is not None}
    for option, value in {**CLI_DEFAULTS, **(defaults or {})}.items():
        if option not in options and not env.get(ENV_OF[option]):
            options[option] = value
    return Config.from_env(env, **options)
