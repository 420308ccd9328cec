"""The client arguments ``securedb shell`` passes on, read the way psql and mariadb read them.

securedb starts the client with its own endpoint, user, database and verify-full TLS, and
the credential in its environment or a password file. An option that changed any of
those, named a file of more options or commands, or ran a shell command (which could read
the credential) could send the credential elsewhere. Rather than list every such option
of every client version, only options whose effect was checked to be harmless pass
(`Option.why` says why, for each); everything else is refused, and so is every positional
argument: psql takes one as the database (or a whole connection string) and the user,
mariadb as the database, and the URL names those.

Arguments are split as the clients split them:

- psql (``getopt_long``): short options bundle (``-Atc SQL``); one that takes a value
  takes the rest of the word or else the next argument (``-Xd conninfo``, ``-vX=1``);
  ``--name=value`` or ``--name value``; non-options may come anywhere; ``--`` ends the
  options.
- mariadb and mysql (``my_getopt``): the same, plus ``_`` for ``-`` in long names, the
  ``--loose-`` prefix, ``--skip-``/``--disable-``/``--enable-`` (and ``=0``/``=1``) on
  on/off options, and ``--group.name`` for option ``name``.

Both clients also accept a unique prefix of a long option (``--ho`` for ``--host``). What
a prefix means depends on every option the installed version knows, so securedb refuses
abbreviations, even of an option it would pass on: options are written in full.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from securedb.errors import ConfigError

__all__ = ["MYSQL", "PSQL", "Client", "Option", "check"]

ValueCheck = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class Option:
    """A client option securedb passes on.

    Attributes:
        name: the long name, as the client spells it.
        short: its one-letter form, or "".
        value: whether it takes a value.
        why: why it is harmless.
        check: for an option with a value, why a value is refused (None: it is not).
    """

    name: str
    short: str
    value: bool
    why: str
    check: ValueCheck | None = None


@dataclass(frozen=True, slots=True)
class Client:
    """A client's option syntax and what securedb lets through.

    Attributes:
        name: for messages.
        options: the options passed on.
        my_getopt: MySQL's option syntax (see the module docstring) rather than getopt's.
        positional: why a positional argument is refused.
        reasons: why some options are refused, by long name or letter; other options get
            the general reason.
        families: (prefix, reason) for groups of long names, such as ``ssl*``.
    """

    name: str
    options: tuple[Option, ...]
    my_getopt: bool
    positional: str
    reasons: Mapping[str, str]
    families: tuple[tuple[str, str], ...] = ()


def check(client: Client, args: Sequence[str]) -> None:
    """Refuse `args` unless every one is an option `client` passes on, with a good value.

    Raises:
        ConfigError: naming the first option refused (never its value, which may be a
            password), why, and what to do instead.
    """
    longs = {o.name: o for o in client.options}
    shorts = {o.short: o for o in client.options if o.short}
    i = 0
    while i < len(args):
        arg, i = args[i], i + 1
        if arg == "--":  # the end of the options: anything after it is positional
            if i < len(args):
                raise _refused(client, f"argument {i + 1}", client.positional)
            return
        if arg.startswith("--"):
            i = _long(client, longs, arg[2:], args, i)
        elif arg.startswith("-") and arg != "-":
            i = _short(client, shorts, arg, args, i)
        else:
            raise _refused(client, f"argument {i}", client.positional)


def _long(
    client: Client, longs: Mapping[str, Option], word: str, args: Sequence[str], i: int
) -> int:
    given, equals, value = word.partition("=")
    name = given.replace("_", "-") if client.my_getopt else given
    if client.my_getopt:
        while name.startswith("loose-"):  # "do not fail if unknown": the same option
            name = name.removeprefix("loose-")
    option = longs.get(name)
    if option is None and client.my_getopt:
        for prefix in ("skip-", "disable-", "enable-"):
            flag = longs.get(name.removeprefix(prefix)) if name.startswith(prefix) else None
            if flag is not None and not flag.value:
                option = flag  # on or off: either is harmless
    if option is None:
        raise _refused(client, f"--{given}", _long_reason(client, longs, name))
    if option.value:
        if not equals:
            if i == len(args):
                raise _refused(client, f"--{given}", "it needs a value")
            value, i = args[i], i + 1
        _check_value(client, f"--{given}", option, value)
    elif equals and not client.my_getopt:  # MySQL's on/off options take =0, =1, =off…
        raise _refused(client, f"--{given}", "it takes no value")
    return i


def _short(
    client: Client, shorts: Mapping[str, Option], arg: str, args: Sequence[str], i: int
) -> int:
    where = f" (argument {i})"
    for k, letter in enumerate(arg[1:], start=2):
        option = shorts.get(letter)
        if option is None:
            reason = client.reasons.get(letter, _general(client))
            raise _refused(client, f"-{letter}{where}", reason)
        if option.value:
            value = arg[k:]  # the rest of the word, else the next argument
            if not value:
                if i == len(args):
                    raise _refused(client, f"-{letter}{where}", "it needs a value")
                value, i = args[i], i + 1
            _check_value(client, f"-{letter}{where}", option, value)
            return i
    return i


def _check_value(client: Client, shown: str, option: Option, value: str) -> None:
    problem = option.check(value) if option.check else None
    if problem:
        raise _refused(client, shown, problem)


def _long_reason(client: Client, longs: Mapping[str, Option], name: str) -> str:
    if client.my_getopt:
        if "." in name:
            return "MySQL clients read --group.option as option 'option'; write options plainly"
        if name.startswith(("maximum-", "autoset-")):
            return "securedb passes on no --maximum- or --autoset- form"
        name, toggles = re.subn(r"^(skip|disable|enable)-", "", name)
        if toggles and name in longs:
            return "the --skip-, --disable- and --enable- forms are for on/off options only"
    if name in client.reasons:
        return client.reasons[name]
    for prefix, reason in client.families:
        if name.startswith(prefix):
            return reason
    known = sorted({n for n in (*longs, *client.reasons) if len(n) > 1 and n.startswith(name)})
    if len(known) == 1 and name:
        then = client.reasons.get(known[0], "write options in full")
        return f"it abbreviates --{known[0]}; {then}"
    return _general(client)


def _general(client: Client) -> str:
    letters = "".join(o.short for o in client.options if o.short)
    longs = ", ".join(f"--{o.name}" for o in client.options if not o.short)
    return (
        "securedb sets the endpoint, user, database and verify-full TLS itself and passes "
        f"on only options that cannot change them or run commands: -{letters} (and their "
        f"long names), {longs}"
    )


def _refused(client: Client, shown: str, reason: str) -> ConfigError:
    """`shown` names the option or the argument, never its value (which may be a secret)."""
    what = shown if shown.startswith("argument") else f"option {shown}"
    return ConfigError(f"client {what} is not passed to {client.name}: {reason}")


# psql


def _psql_command(value: str) -> str | None:
    if "\\" in value:
        return (
            "psql runs a -c value starting with a backslash as a meta-command (\\connect, "
            "\\!, \\o |…), which could send the credential elsewhere, so a -c value may hold "
            "no backslash; run meta-commands interactively"
        )
    return None


def _psql_output(value: str) -> str | None:
    if value.lstrip().startswith("|"):
        return (
            "an output pipe runs a shell command, which could read the credential; "
            "pipe the output of securedb itself instead"
        )
    return None


def _psql_variable(value: str) -> str | None:
    if value.partition("=")[0].upper() in {"PROMPT1", "PROMPT2", "PROMPT3"}:
        return (
            "a prompt can run a shell command (%`…`), which could read the credential; "
            "set prompts interactively"
        )
    return None


_PG_ENDPOINT = "the endpoint comes from the URL (and --tunnel); change the URL instead"
_PG_WHO = "the database and the user come from the URL; change the URL instead"

PSQL = Client(
    name="psql",
    my_getopt=False,
    positional=(
        "psql would read it as the database name (or a whole connection string) or the "
        "user; the URL names both"
    ),
    reasons={
        **dict.fromkeys(("h", "host", "p", "port"), _PG_ENDPOINT),
        **dict.fromkeys(("d", "dbname", "U", "username"), _PG_WHO),
        **dict.fromkeys(("W", "password"), "the credential comes from securedb"),
        **dict.fromkeys(
            ("f", "file"),
            "a script file can hold \\connect and shell escapes, which securedb cannot "
            "check; type them interactively, or feed a script you trust on standard input",
        ),
    },
    options=(
        Option("echo-all", "a", False, "prints input lines as they are read"),
        Option("no-align", "A", False, "unaligned output"),
        Option("echo-errors", "b", False, "prints failed commands"),
        Option(
            "command", "c", True, "SQL for the verified connection; no backslash", _psql_command
        ),
        Option("csv", "", False, "CSV output"),
        Option("echo-queries", "e", False, "prints the SQL sent"),
        Option("echo-hidden", "E", False, "prints the SQL behind meta-commands"),
        Option("field-separator", "F", True, "an output separator"),
        Option("html", "H", False, "HTML output"),
        Option("list", "l", False, "lists the databases over the verified connection"),
        Option("log-file", "L", True, "appends queries and results to a file"),
        Option("no-readline", "n", False, "plain line input"),
        Option("output", "o", True, "query results to a file; not a |pipe", _psql_output),
        Option("pset", "P", True, "a printing option (\\pset: formats, pager on or off)"),
        Option("quiet", "q", False, "fewer messages"),
        Option("record-separator", "R", True, "an output separator"),
        Option("single-step", "s", False, "asks before each command"),
        Option("single-line", "S", False, "a newline ends a command"),
        Option("tuples-only", "t", False, "rows only"),
        Option("table-attr", "T", True, "HTML table attributes"),
        Option("set", "v", True, "a psql variable; not a prompt", _psql_variable),
        Option("variable", "", True, "the same as --set", _psql_variable),
        Option("no-password", "w", False, "never prompts for a password"),
        Option("expanded", "x", False, "expanded output"),
        Option("no-psqlrc", "X", False, "reads no startup file (securedb passes it anyway)"),
        Option("field-separator-zero", "z", False, "an output separator"),
        Option("record-separator-zero", "0", False, "an output separator"),
        Option("single-transaction", "1", False, "runs the commands in one transaction"),
    ),
)


# mariadb and mysql


_MYSQL_COMMANDS = re.compile(r"\\|\b(connect|source|system|pager|edit)\b", re.IGNORECASE)


def _mysql_execute(value: str) -> str | None:
    if _MYSQL_COMMANDS.search(value):
        return (
            "the client runs a backslash command, or the words connect, source, system, pager "
            "and edit at the start of a line, as its own commands, which could reconnect "
            "elsewhere or run a shell command, so an -e value may hold none of them; run "
            "them interactively (and -E for vertical output)"
        )
    return None


_MY_ENDPOINT = "the endpoint comes from the URL; change the URL instead"
_MY_WHO = "the database and the user come from the URL; change the URL instead"
_MY_FILES = (
    "option files could change the endpoint or TLS, so securedb starts the client with "
    "--no-defaults; pass harmless options on the command line"
)
_MY_AUTH = "securedb chooses how the credential is sent"

MYSQL = Client(
    name="the MySQL client",
    my_getopt=True,
    positional="the client would read it as the database name; the URL names it",
    reasons={
        **dict.fromkeys(("h", "host", "P", "port", "S", "socket", "protocol"), _MY_ENDPOINT),
        **dict.fromkeys(("u", "user", "D", "database"), _MY_WHO),
        **dict.fromkeys(("p", "password"), "the credential comes from securedb"),
        **dict.fromkeys(
            (
                "no-defaults",
                "print-defaults",
                "defaults-file",
                "defaults-extra-file",
                "defaults-group-suffix",
                "login-path",
            ),
            _MY_FILES,
        ),
        **dict.fromkeys(
            ("plugin-dir", "default-auth", "enable-cleartext-plugin", "cleartext-plugin"),
            _MY_AUTH,
        ),
        "pager": "a pager is a shell command, which could read the credential",
    },
    families=(
        ("ssl", "verify-full TLS is securedb's; pass --ca-bundle for another trust store"),
        ("tls", "verify-full TLS is securedb's; pass --ca-bundle for another trust store"),
    ),
    options=(
        Option("auto-rehash", "", False, "name completion"),
        Option("no-auto-rehash", "A", False, "no name completion"),
        Option("auto-vertical-output", "", False, "vertical output when rows are wide"),
        Option("batch", "B", False, "tab-separated output, no history"),
        Option("no-beep", "b", False, "no beep on errors"),
        Option("binary-as-hex", "", False, "binary columns as hex"),
        Option("comments", "c", False, "keeps SQL comments"),
        Option("column-names", "", False, "column names in output"),
        Option("skip-column-names", "N", False, "no column names in output"),
        Option("column-type-info", "", False, "prints result metadata"),
        Option("connect-timeout", "", True, "seconds to wait for the verified endpoint"),
        Option("vertical", "E", False, "vertical output"),
        Option(
            "execute",
            "e",
            True,
            "SQL for the verified connection; no client command",
            _mysql_execute,
        ),
        Option("force", "f", False, "goes on after an SQL error"),
        Option("html", "H", False, "HTML output"),
        Option("line-numbers", "", False, "line numbers in errors"),
        Option("skip-line-numbers", "L", False, "no line numbers in errors"),
        Option("unbuffered", "n", False, "flushes after each query"),
        Option("quick", "q", False, "prints rows as they come"),
        Option("raw", "r", False, "no escaping in output"),
        Option("safe-updates", "U", False, "refuses UPDATE and DELETE without a key"),
        Option("sandbox", "", False, "refuses commands that touch files (MariaDB)"),
        Option("show-warnings", "", False, "prints warnings"),
        Option("silent", "s", False, "fewer messages"),
        Option("table", "t", False, "table output"),
        Option("verbose", "v", False, "more messages"),
        Option("xml", "X", False, "XML output"),
    ),
)
