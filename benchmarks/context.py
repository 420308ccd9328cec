"""What the cases need from the bed: URLs, raw driver arguments, tokens, a secret."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bed import certs, mariadb, postgres
from bed.bed import Bed
from bed.names import Hosts
from bed.tokens import mint

REGION = certs.REGION
PG_USER, MY_USER = postgres.IAM_USER, mariadb.IAM_USER
APP_USER, APP_PASSWORD = postgres.APP_USER, postgres.APP_PASSWORD
REQUIREMENTS = "pip install -r benchmarks/requirements.txt"


def missing(module: str) -> str | None:
    """None if `module` can be imported, else why a contender using it cannot run."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed ({REQUIREMENTS})"
    return None


class Ctx:
    """The bed as the cases see it. Every TLS setting is verify-full against the bed's CA.

    `hosts` is the process's private /etc/hosts, entered at start-up, for the Aurora
    cluster's names; without it, `hosts_missing` says why.
    """

    def __init__(
        self, bed: Bed, hosts: Hosts | None = None, hosts_missing: str | None = None
    ) -> None:
        self.bed = bed
        self.hosts, self.hosts_missing = hosts, hosts_missing
        self.ca = str(bed.pki.ca)
        port = bed.primary.port
        self.pg_port, self.my_port = port, bed.mariadb.port
        self.pg_iam_url = f"postgresql://{PG_USER}@localhost:{port}/app"
        self.pg_password_url = f"postgresql://{APP_USER}:{APP_PASSWORD}@localhost:{port}/app"
        self.my_iam_url = f"mysql://{MY_USER}@127.0.0.1:{self.my_port}/app"
        self.my_password_url = f"mysql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{self.my_port}/app"
        self.proxy_iam_url = f"postgresql://{PG_USER}@localhost:{bed.proxy_iam.port}/app"
        self.proxy_password_url = (
            f"postgresql://{APP_USER}:{APP_PASSWORD}@localhost:{bed.proxy_password.port}/app"
        )

    def pg_kwargs(self, port: int | None = None, *, iam: bool = True) -> dict[str, Any]:
        """Raw psycopg arguments: verify-full TLS, and a token minted now or the password."""
        port = port or self.pg_port
        user = PG_USER if iam else APP_USER
        password = mint("localhost", port, PG_USER) if iam else APP_PASSWORD
        return {
            "host": "localhost",
            "port": port,
            "dbname": "app",
            "user": user,
            "password": password,
            "sslmode": "verify-full",
            "sslrootcert": self.ca,
        }

    def my_kwargs(self) -> dict[str, Any]:
        """Raw PyMySQL arguments: a verifying SSLContext and a token minted now."""
        return {
            "host": "127.0.0.1",
            "port": self.my_port,
            "database": "app",
            "user": MY_USER,
            "password": mint("127.0.0.1", self.my_port, MY_USER),
            "ssl": ssl.create_default_context(cafile=self.ca),
        }

    def aiomysql_kwargs(self, *, iam: bool = False) -> dict[str, Any]:
        """Raw aiomysql arguments: a verifying SSLContext, and a token minted now or the password.

        MariaDB's password user (app_user) by default: the bed's PAM logins are for one
        connection at a time.
        """
        return {
            "host": "127.0.0.1",
            "port": self.my_port,
            "db": "app",
            "user": MY_USER if iam else APP_USER,
            "password": mint("127.0.0.1", self.my_port, MY_USER) if iam else APP_PASSWORD,
            "ssl": ssl.create_default_context(cafile=self.ca),
        }

    def asyncpg_kwargs(self) -> dict[str, Any]:
        """Raw asyncpg arguments for the primary as iam_user: a token minted now, and an
        SSLContext verifying the bed's CA with the host name check on (verify-full)."""
        return {
            "host": "localhost",
            "port": self.pg_port,
            "database": "app",
            "user": PG_USER,
            "password": mint("localhost", self.pg_port, PG_USER),
            "ssl": ssl.create_default_context(cafile=self.ca),
        }

    def wrapper_kwargs(self, plugins: str) -> dict[str, Any]:
        """AWS Advanced Python Wrapper arguments for the primary, as iam_user.

        Its IAM plugin refuses a host that is not an RDS name ("Invalid IAM host
        localhost"), so the token names the RDS-style endpoint the bed's verifier
        accepts for the primary (`iam_host`, `iam_default_port`); the socket and the
        certificate check still go to localhost.
        """
        return {
            "host": "localhost",
            "port": self.pg_port,
            "dbname": "app",
            "user": PG_USER,
            "sslmode": "verify-full",
            "sslrootcert": self.ca,
            "plugins": plugins,
            "iam_host": certs.PG_INSTANCE,
            "iam_default_port": 5432,
            "iam_region": REGION,
        }

    @functools.cached_property
    def secret_id(self) -> str:
        """An RDS-format secret for app_user on the primary, created in moto."""
        import boto3

        name = f"securedb-bench/{secrets.token_hex(4)}"
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=name,
            SecretString=json.dumps(
                {
                    "engine": "postgres",
                    "host": "localhost",
                    "port": self.pg_port,
                    "dbname": "app",
                    "username": APP_USER,
                    "password": APP_PASSWORD,
                }
            ),
        )
        return name


@contextlib.contextmanager
def pinned(bed: Bed) -> Iterator[str]:
    """This thread on the first CPU, the PostgreSQL primary and MariaDB on the others.

    Left free, a server process that answers a client on another CPU takes a wake-up
    across CPUs (about 90 µs on a small virtual machine), and on the same CPU about a
    fifth of that; the scheduler moves them between the two at random, so a round trip
    is bimodal. Pinned, each case sees one of the two, steadily. Undone on exit.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield "not pinned (one CPU)"
        return
    client, servers = {cpus[0]}, set(cpus[1:])
    saved = {0: os.sched_getaffinity(0)}
    roots = [p.proc.pid for p in (bed.primary, bed.mariadb) if p.proc is not None]
    try:
        for tid in _threads(roots):
            with contextlib.suppress(OSError):
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, servers)
        os.sched_setaffinity(0, client)
        yield f"client thread on CPU {cpus[0]}, database servers on CPU {min(servers)}" + (
            f"-{max(servers)}" if len(servers) > 1 else ""
        )
    finally:
        for tid, mask in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, mask)


def _threads(roots: list[int]) -> list[int]:
    """Every thread of the processes under `roots` (the roots included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
    tree, grown = set(roots), True
    while grown:
        kids = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= kids
        grown = bool(kids)
    threads = []
    for pid in tree:
        with contextlib.suppress(OSError):
            threads += [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    return threads
