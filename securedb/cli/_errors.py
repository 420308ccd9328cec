"""securedb's errors as the command line says them: on one line, naming its flags.

The library's messages name its Python options (``secret_id=``, ``auth='iam'``, ``bad
value for iam_token_ttl``); the command takes the same options as flags (``--secret-id``,
``--auth iam``, ``--iam-token-ttl``). `flag_spelling` rewrites every option that
`_options.FLAGS` has, and leaves quoted values (paths, secret names) as they are.
"""

from __future__ import annotations

import re
import shlex
import sys

from securedb.cli._options import FLAGS
from securedb.errors import SecureDBError

__all__ = ["flag_spelling", "message", "report"]

FLAG_OF = {option: flag for flag, option, _, _ in FLAGS}
_OPTIONS = "|".join(sorted(FLAG_OF, key=len, reverse=True))
_UNDERSCORED = "|".join(option for option in FLAG_OF if "_" in option)  # never English
_SPELLING = re.compile(
    r"(?<!\w)(?P<quoted>'[^']*'|\"[^\"]*\")"  # a quoted value: kept as it is
    rf"|\b(?P<assigned>{_OPTIONS})=(?:'(?P<value>[^'\s]*)')?"  # secret_id=, auth='iam'
    rf"|(?<=bad value for )(?P<valued>{_OPTIONS})\b"  # bad value for refresh: 'x'
    rf"|^(?P<subject>{_OPTIONS})(?= )"  # region must be a non-empty string
    rf"|\b(?P<named>{_UNDERSCORED})\b"  # ca_bundle '/x' is not a file
)


def flag_spelling(text: str) -> str:
    """`text` with securedb's Python options spelt as the command's flags."""
    return _SPELLING.sub(_flag, text)


def _flag(match: re.Match[str]) -> str:
    if match["quoted"]:
        return match["quoted"]
    option = match["assigned"] or match["valued"] or match["subject"] or match["named"]
    flag = FLAG_OF[option]
    value = match["value"]
    return flag if value is None else f"{flag} {shlex.quote(value)}"


def message(exc: BaseException) -> str:
    """What the command says of `exc`: one line; a securedb error names flags."""
    text = " ".join(str(exc).split())
    return flag_spelling(text) if isinstance(exc, SecureDBError) else text


def report(exc: BaseException) -> None:
    """Say `exc` on standard error, as ``securedb: <one line>``."""
    print(f"securedb: {message(exc)}", file=sys.stderr)
