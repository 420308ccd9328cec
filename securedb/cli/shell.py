"""``securedb shell URL [-- CLIENT_ARGS]``: run psql, or mariadb/mysql, verify-full TLS.

The credential (IAM token, the secret's password) never goes on the client's command
line, which every user of the machine can read:

- psql finds it in a libpq password file (``PGPASSFILE``, mode 0600, in a private
  temporary directory), on one line for the endpoint's host name, port and user. libpq
  sends it only where those match, so a later ``\\connect`` elsewhere gets none
  (``PGPASSWORD`` would go to any host). psql gets one conninfo: ``sslmode=verify-full
  sslrootcert=<bundle>``, ``host`` the real endpoint name and, for ``--tunnel``,
  ``hostaddr``/``port`` the forward (libpq checks the certificate against ``host`` while
  its socket goes to ``hostaddr``); ``PGSSLMODE`` and ``PGSSLROOTCERT`` keep verify-full
  the default of a ``\\connect`` that does not say otherwise; and ``-X``: no psqlrc.
- mariadb gets ``--no-defaults`` (no option file), ``--ssl-ca=<bundle>
  --ssl-verify-server-cert`` (Oracle's mysql: ``--ssl-mode=VERIFY_IDENTITY``), TCP even
  for ``localhost``, and the credential in ``MYSQL_PWD``.

Client arguments pass only if `_client_args` lets them through, and the environment
loses every ``PG*`` or ``MYSQL*`` variable that could redirect the client. securedb runs
the client and waits for it, rather than replacing itself with it, so that it can remove
the password file when the client exits; the exit status is the client's.

MySQL clients check the certificate against the name they connect to and have no
``hostaddr``; through a tunnel they would have to connect to ``127.0.0.1`` and refuse
the RDS certificate, so ``--tunnel`` is refused for them (the message says what to do).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from securedb import tls
from securedb.cli import _client_args
from securedb.cli._options import add_config_flags, config_from
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.errors import ConfigError, SecureDBError

__all__ = ["mysql_command", "psql_command", "register", "write_passfile"]

# The only PG*/MYSQL* variables the client keeps: none of them says where to connect,
# as whom, with which TLS or with which password.
PG_KEPT = frozenset(
    {"PGAPPNAME", "PGCLIENTENCODING", "PGCONNECT_TIMEOUT", "PGDATESTYLE", "PGOPTIONS", "PGTZ"}
)
MYSQL_KEPT = frozenset({"MYSQL_HISTFILE", "MYSQL_HISTIGNORE", "MYSQL_PS1"})
MYSQL_PREFIXES = ("MYSQL", "MARIADB", "LIBMYSQL")
CLIENTS = {"postgresql": _client_args.PSQL, "mysql": _client_args.MYSQL}
MYSQL_TUNNEL = (
    "--tunnel is not supported by `securedb shell` for MySQL: the mysql and mariadb "
    "clients verify the certificate against the host name they connect to and, unlike "
    "psql, cannot send the socket elsewhere, so through a forward on {tunnel} they would "
    "refuse the certificate of {host} (or need verification turned off, which securedb "
    "never does); instead map the name to the forward (a line '127.0.0.1 {host}' in "
    "/etc/hosts), forward local port {port}, and run without --tunnel"
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "shell",
        help="run psql or mariadb/mysql with verify-full TLS and managed credentials",
        description="Run psql (PostgreSQL) or mariadb/mysql (MySQL) against the endpoint, "
        "TLS verify-full, the credential out of the command line. Arguments after -- go "
        "to the client, if they cannot change the endpoint, the user or TLS; the exit "
        "status is the client's.",
    )
    add_config_flags(parser)
    parser.set_defaults(run=run, takes_client_args=True)


def run(args: argparse.Namespace) -> int:
    from securedb.connector import Connector

    cfg = config_from(args)
    _check_supported(cfg)
    if cfg.engine is not None:  # refuse before fetching a credential (else: the secret's)
        _client_args.check(CLIENTS[cfg.engine], args.client_args)
    connector = Connector(cfg)
    try:
        cred = connector.cache.get()
        cfg = connector.config  # an RDS-managed secret may name the endpoint
    finally:
        connector.close()
    _check_supported(cfg)
    if cfg.engine == "mysql":
        return _run_client(*mysql_command(cfg, cred, args.client_args, os.environ))
    with tempfile.TemporaryDirectory(prefix="securedb-shell-") as private:
        passfile = os.path.join(private, "pgpass")
        argv, env = psql_command(cfg, cred, args.client_args, os.environ, passfile)
        write_passfile(passfile, cfg, cred)
        return _run_client(argv, env)


def _check_supported(cfg: Config) -> None:
    if cfg.engine == "mysql" and cfg.tunnel is not None:
        raise ConfigError(
            MYSQL_TUNNEL.format(
                tunnel=f"{cfg.tunnel[0]}:{cfg.tunnel[1]}", host=cfg.host, port=cfg.port
            )
        )


def psql_command(
    cfg: Config,
    cred: Credential,
    client_args: Sequence[str],
    environ: Mapping[str, str],
    passfile: str,
) -> tuple[list[str], dict[str, str]]:
    """psql's argv and environment, neither holding the secret: psql reads it from
    `passfile`, which `write_passfile` writes.

    Raises:
        ConfigError: a client argument is not one securedb passes on.
    """
    _client_args.check(CLIENTS["postgresql"], client_args)
    params = {"host": cfg.host, "port": cfg.port, "dbname": cfg.dbname, "user": cred.user}
    params |= tls.libpq_params(cfg)  # verify-full, the trust store, hostaddr/port of a tunnel
    conninfo = " ".join(f"{k}={_quote(str(v))}" for k, v in params.items() if v is not None)
    env = {k: v for k, v in environ.items() if not k.startswith("PG") or k in PG_KEPT}
    env |= {
        "PGPASSFILE": passfile,
        # The defaults of a \connect that names no TLS settings of its own.
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": tls.ca_file(cfg),
        "PGSSLMINPROTOCOLVERSION": "TLSv1.2",
        "PGGSSENCMODE": "disable",
    }
    return [_client("psql"), "-X", f"--dbname={conninfo}", *client_args], env


def write_passfile(path: str, cfg: Config, cred: Credential) -> None:
    """Write a libpq password file at `path` (a new file, mode 0600) holding `cred` for
    `cfg`'s endpoint only: its host name, port (the tunnel's, if any) and user.

    libpq looks the password up by the host name the connection names (not the address
    it goes to) and ignores a file that others can read.

    Raises:
        SecureDBError: the password holds a line break, which the file cannot hold.
    """
    if "\n" in cred.password or "\r" in cred.password:
        raise SecureDBError(
            f"the password for {cred.user}@{cfg.host} holds a line break, which a libpq "
            "password file cannot hold; change the password"
        )
    host = str(cfg.host)
    port = str(cfg.tunnel[1] if cfg.tunnel else cfg.port)  # as tls.libpq_params sets it
    # libpq looks a connection through its default socket directory up as "localhost".
    hosts = [host, "localhost"] if host.startswith("/") else [host]
    lines = "".join(
        ":".join((_pgpass(h), _pgpass(port), "*", _pgpass(cred.user), _pgpass(cred.password)))
        + "\n"
        for h in hosts
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(lines)


def mysql_command(
    cfg: Config, cred: Credential, client_args: Sequence[str], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """mariadb's (or mysql's) argv (no secret in it) and environment (``MYSQL_PWD``).

    Raises:
        ConfigError: a client argument is not one securedb passes on.
    """
    _client_args.check(CLIENTS["mysql"], client_args)
    client = _client("mariadb", "mysql")
    if _is_mariadb(client):
        verify = ["--ssl", "--ssl-verify-server-cert"]
    else:  # Oracle's client: no --ssl-verify-server-cert; cleartext only on request
        verify = ["--ssl-mode=VERIFY_IDENTITY"]
        verify += ["--enable-cleartext-plugin"] if cfg.auth == "iam" else []
    argv = [
        client,
        "--no-defaults",  # must come first; no option file may change what follows
        f"--host={cfg.host}",
        f"--port={cfg.port}",
        "--protocol=TCP",  # "localhost" would otherwise mean the Unix socket
        f"--user={cred.user}",
        f"--ssl-ca={tls.ca_file(cfg)}",
        *verify,
        *([f"--database={cfg.dbname}"] if cfg.dbname else []),
        *client_args,
    ]
    env = {k: v for k, v in environ.items() if not k.startswith(MYSQL_PREFIXES) or k in MYSQL_KEPT}
    env["MYSQL_PWD"] = cred.password
    return argv, env


def _run_client(argv: list[str], env: dict[str, str]) -> int:
    """Run the client in the foreground until it exits; return its exit status.

    Ctrl-C and Ctrl-\\ reach the client from the terminal (psql and mariadb cancel the
    running query on Ctrl-C), so securedb waits through them; SIGTERM or SIGHUP sent to
    securedb alone go on to the client. A client ended by signal N gives 128 + N, as a
    shell reports it. The handlers are Python functions, not SIG_IGN, because the client
    inherits an ignored signal but starts with the default action for a handled one.
    """
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is not None:
            child.send_signal(signum)

    def wait_through(signum: int, frame: FrameType | None) -> None:
        pass

    sys.stdout.flush()
    sys.stderr.flush()
    handlers = {
        signal.SIGINT: wait_through,
        signal.SIGQUIT: wait_through,
        signal.SIGTERM: forward,
        signal.SIGHUP: forward,
    }
    previous: dict[signal.Signals, Any] = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        child = subprocess.Popen(argv, env=env)
        status = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    return 128 - status if status < 0 else status


def _client(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise SecureDBError(
        f"{' or '.join(names)} not found on PATH; install the client "
        "(Debian: postgresql-client or mariadb-client)"
    )


def _is_mariadb(client: str) -> bool:
    if os.path.basename(client).startswith("mariadb"):
        return True
    try:
        out = subprocess.run(
            [client, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "mariadb" in out.stdout.lower()


def _quote(value: str) -> str:
    """A conninfo value, always single-quoted with \\ and ' escaped: whitespace of any
    kind (a tab, a newline) inside it cannot start another parameter."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pgpass(field: str) -> str:
    """A password-file field: \\ and : escaped, and a lone * made literal (not "any")."""
    escaped = field.replace("\\", "\\\\").replace(":", "\\:")
    return "\\*" if escaped == "*" else escaped
