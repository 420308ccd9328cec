"""``securedb shell URL [-- CLIENT_ARGS]``: run psql, or mariadb/mysql, verify-full TLS.

The credential (IAM token, the secret's password) goes to the client in its
environment, ``PGPASSWORD`` or ``MYSQL_PWD``, never on its command line, which every user
of the machine can read. securedb then replaces itself with the client, so the exit
status, the terminal and Ctrl-C are the client's own.

- psql gets one conninfo: ``sslmode=verify-full sslrootcert=<bundle>``, ``host`` the real
  endpoint name and, for ``--tunnel``, ``hostaddr``/``port`` the forward (libpq checks the
  certificate against ``host`` while its socket goes to ``hostaddr``).
- mariadb gets ``--ssl-ca=<bundle> --ssl-verify-server-cert`` (Oracle's mysql:
  ``--ssl-mode=VERIFY_IDENTITY``) and TCP even for ``localhost``.

MySQL clients check the certificate against the name they connect to and have no
``hostaddr``; through a tunnel they would have to connect to ``127.0.0.1`` and refuse
the RDS certificate, so ``--tunnel`` is refused for them (the message says what to do).
Client options that would change the endpoint, the user or TLS are refused too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

from securedb import tls
from securedb.cli._options import add_config_flags, config_from
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.errors import ConfigError, SecureDBError

__all__ = ["mysql_command", "psql_command", "register"]

PSQL_OWNED = ("-h", "--host", "-p", "--port", "-U", "--username", "-d", "--dbname")
MYSQL_OWNED = (
    *("-h", "--host", "-P", "--port", "-u", "--user", "-S", "--socket", "--protocol"),
    *("-p", "--password", "--defaults-file", "--defaults-extra-file"),
)
# Connection variables that would send libpq elsewhere than the conninfo says.
PG_REDIRECTS = ("PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE", "PGPASSFILE")
MYSQL_TUNNEL = (
    "--tunnel is not supported by `securedb shell` for MySQL: the mysql and mariadb "
    "clients verify the certificate against the host name they connect to and, unlike "
    "psql, cannot send the socket elsewhere, so through a forward on {tunnel} they would "
    "refuse the certificate of {host} (or need verification turned off, which securedb "
    "never does); instead map the name to the forward (a line '127.0.0.1 {host}' in "
    "/etc/hosts), forward local port {port}, and run without --tunnel"
)

_exec = os.execve  # replaced in tests


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "shell",
        help="run psql or mariadb/mysql with verify-full TLS and managed credentials",
        description="Run psql (PostgreSQL) or mariadb/mysql (MySQL) against the endpoint, "
        "TLS verify-full, the credential in the client's environment. Arguments after -- "
        "go to the client; the exit status is the client's.",
    )
    add_config_flags(parser)
    parser.set_defaults(run=run, takes_client_args=True)


def run(args: argparse.Namespace) -> int:
    from securedb.connector import Connector

    cfg = config_from(args)
    _check_supported(cfg)
    connector = Connector(cfg)
    try:
        cred = connector.cache.get()
        cfg = connector.config  # an RDS-managed secret may name the endpoint
    finally:
        connector.close()
    _check_supported(cfg)
    build = psql_command if cfg.engine == "postgresql" else mysql_command
    argv, env = build(cfg, cred, args.client_args, os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    _exec(argv[0], argv, env)
    return 0  # only reached when _exec is replaced (tests)


def _check_supported(cfg: Config) -> None:
    if cfg.engine == "mysql" and cfg.tunnel is not None:
        raise ConfigError(
            MYSQL_TUNNEL.format(
                tunnel=f"{cfg.tunnel[0]}:{cfg.tunnel[1]}", host=cfg.host, port=cfg.port
            )
        )


def psql_command(
    cfg: Config, cred: Credential, client_args: Sequence[str], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """psql's argv (no secret in it) and environment (``PGPASSWORD``)."""
    _refuse_owned(client_args, PSQL_OWNED, (), "psql")
    params = {
        "host": cfg.host,
        "port": cfg.port,
        "dbname": cfg.dbname,
        "user": cred.user,
        **tls.libpq_params(cfg),  # verify-full, the trust store, hostaddr/port of a tunnel
    }
    conninfo = " ".join(f"{k}={_quote(str(v))}" for k, v in params.items() if v is not None)
    env = {k: v for k, v in environ.items() if k not in PG_REDIRECTS}
    env["PGPASSWORD"] = cred.password
    return [_client("psql"), f"--dbname={conninfo}", *client_args], env


def mysql_command(
    cfg: Config, cred: Credential, client_args: Sequence[str], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """mariadb's (or mysql's) argv (no secret in it) and environment (``MYSQL_PWD``)."""
    _refuse_owned(client_args, MYSQL_OWNED, ("ssl", "tls"), "the MySQL client")
    client = _client("mariadb", "mysql")
    if _is_mariadb(client):
        verify = ["--ssl", "--ssl-verify-server-cert"]
    else:  # Oracle's client: no --ssl-verify-server-cert; cleartext only on request
        verify = ["--ssl-mode=VERIFY_IDENTITY"]
        verify += ["--enable-cleartext-plugin"] if cfg.auth == "iam" else []
    argv = [
        client,
        f"--host={cfg.host}",
        f"--port={cfg.port}",
        "--protocol=TCP",  # "localhost" would otherwise mean the Unix socket
        f"--user={cred.user}",
        f"--ssl-ca={tls.ca_file(cfg)}",
        *verify,
        *([f"--database={cfg.dbname}"] if cfg.dbname else []),
        *client_args,
    ]
    return argv, {**environ, "MYSQL_PWD": cred.password}


def _refuse_owned(
    client_args: Sequence[str], owned: Sequence[str], words: Sequence[str], client: str
) -> None:
    """Refuse client options that would change what securedb set: endpoint, user, TLS."""
    for arg in client_args:
        name = arg.split("=", 1)[0]
        long = name.startswith("--") and len(name) > 2
        hit = any(
            (opt.startswith("--") and long and opt.startswith(name))
            or (not opt.startswith("--") and not name.startswith("--") and arg.startswith(opt))
            for opt in owned
        ) or (long and any(word in name for word in words))
        if hit:
            raise ConfigError(
                f"client option {name!r} is securedb's: the endpoint, user, credential and "
                f"verify-full TLS of {client} come from the URL and the options; pass the "
                "URL and --tunnel/--ca-bundle instead"
            )


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
    """A conninfo value: bare if plain, else single-quoted with \\ and ' escaped."""
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
