"""The ``securedb`` command: ``check``, ``token``, ``shell``, ``audit`` and ``ca``.

Each command lives in its own module with a ``register(commands)`` function. Exit
statuses: 0 success, 1 a failure (a failed check, a refused login, a high finding, an
error), 2 a usage or configuration error (the message names the option). Errors go to
stderr as one line, naming options by their flags (``--secret-id``, not ``secret_id=``);
no command prints a secret, except ``token``, whose whole stdout is the token.
"""

from __future__ import annotations

import argparse
import sys

from securedb import __version__, _log  # noqa: F401  (the library's records go to the application, not stderr)
from securedb.cli import _errors
from securedb.errors import ConfigError, SecureDBError

__all__ = ["main"]

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: ``sys.argv[1:]``); return the exit status.

    Arguments after ``--`` go to the client that ``securedb shell`` runs.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    words, client_args = _split(words)
    parser = _parser()
    args = parser.parse_args(words)
    if client_args and not getattr(args, "takes_client_args", False):
        parser.error("arguments after -- are only for `securedb shell`")
    args.client_args = client_args
    try:
        return int(args.run(args))
    except ConfigError as exc:
        _errors.report(exc)
        return EXIT_USAGE
    except (SecureDBError, ImportError) as exc:
        _errors.report(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _split(words: list[str]) -> tuple[list[str], list[str]]:
    if "--" not in words:
        return words, []
    cut = words.index("--")
    return words[:cut], words[cut + 1 :]


def _parser() -> argparse.ArgumentParser:
    from securedb.cli import audit, ca, check, shell, token

    parser = argparse.ArgumentParser(
        prog="securedb",
        description="Check, open and audit secure connections to Amazon RDS and Aurora.",
        epilog="Connection options mirror securedb's Config; SECUREDB_* variables work too. "
        "Exit status: 0 ok, 1 failure, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"securedb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (check, token, shell, audit, ca):
        module.register(commands)
    return parser
