"""PostgreSQL 15 nodes for the bed: a TLS-only primary and a streaming replica.

Each node is a `postgres` process run as the `postgres` OS user on a port of its own.
Only `hostssl` lines accept TCP logins: members of `rds_iam` log in through PAM (the
token verifier, as RDS IAM auth), everyone else with a scram password. The local
socket (trust) lives in a directory only `postgres` can enter and serves the bed's
own administration.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from bed import procs
from bed.certs import ServerCert

PG_BIN = "/usr/lib/postgresql/15/bin"
OS_USER = "postgres"
DATABASE = "app"
APP_USER, APP_PASSWORD = "app_user", "app-user-password-0"
IAM_USER = "iam_user"
REPLICATOR, REPLICATOR_PASSWORD = "replicator", "replicator-password-0"

STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}

SETUP_SQL = f"""
CREATE ROLE rds_iam;
CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}';
CREATE ROLE {IAM_USER} LOGIN IN ROLE rds_iam, {APP_USER};
CREATE ROLE {REPLICATOR} REPLICATION LOGIN PASSWORD '{REPLICATOR_PASSWORD}';
CREATE DATABASE {DATABASE} OWNER {APP_USER};
"""


def hba(pam_service: str, network: str = "127.0.0.1/32") -> str:
    """TLS logins from `network` (and ::1): replication, IAM through PAM, else scram."""
    lines = ["local all all trust", "hostnossl all all all reject"]
    for net in (network, "::1/128"):
        lines += [
            f"hostssl replication {REPLICATOR} {net} scram-sha-256",
            f"hostssl all +rds_iam {net} pam pamservice={pam_service}",
            f"hostssl all all {net} scram-sha-256",
        ]
    return "\n".join(lines) + "\n"


def server_conf(cert: ServerCert, ca: Path, host: str = "127.0.0.1") -> str:
    return f"""
listen_addresses = '{host}'
ssl = on
ssl_cert_file = '{cert.cert}'
ssl_key_file = '{cert.key}'
ssl_ca_file = '{ca}'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
max_connections = 300
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 10
hot_standby = on
fsync = off
full_page_writes = off
log_connections = on
log_line_prefix = '%m [%p] %u@%d '
"""


class Postgres:
    """One PostgreSQL node. `primary` is the node a replica streams from, if any.

    It listens on `host` and `port` (default: 127.0.0.1 and a free port), accepts TLS
    logins from `network`, and adds `conf` to its postgresql.conf.
    """

    def __init__(
        self,
        root: Path,
        name: str,
        cert: ServerCert,
        ca: Path,
        pam_service: str,
        primary: Postgres | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        network: str = "127.0.0.1/32",
        conf: str = "",
    ) -> None:
        self.name, self.cert, self.ca, self.pam_service = name, cert, ca, pam_service
        self.primary = primary
        self.host, self.network, self.conf = host, network, conf
        self.data = root / name
        self.sockets = root / f"{name}-sock"
        self.log = root / f"{name}.log"
        self.port = procs.free_port() if port is None else port
        self.proc: subprocess.Popen[bytes] | None = None

    def create(self) -> None:
        """Make the data directory: initdb for a primary, pg_basebackup for a replica."""
        for d in (self.data, self.sockets):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(mode=0o700)
            procs.chown(d, OS_USER)
        if self.primary is None:
            self._initdb()
        else:
            self._basebackup(self.primary)
        # A replica's files are its primary's copy: its own settings go last, and win.
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(server_conf(self.cert, self.ca, self.host) + self.conf)

    def _initdb(self) -> None:
        procs.run_as(
            OS_USER,
            [
                f"{PG_BIN}/initdb",
                "-N",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
        )
        (self.data / "pg_hba.conf").write_text(hba(self.pam_service, self.network))

    def _basebackup(self, primary: Postgres) -> None:
        conninfo = self.replication_conninfo(primary)
        procs.run_as(
            OS_USER,
            [
                f"{PG_BIN}/pg_basebackup",
                "-D",
                str(self.data),
                "-X",
                "stream",
                "-c",
                "fast",
                "-d",
                self.replication_conninfo(primary, password=""),
            ],
            env={"PGPASSWORD": REPLICATOR_PASSWORD},
        )
        (self.data / "standby.signal").touch()
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"primary_conninfo = '{conninfo}'\n")
        procs.chown(self.data / "standby.signal", OS_USER)

    def replication_conninfo(self, primary: Postgres, password: str = REPLICATOR_PASSWORD) -> str:
        secret = f" password={password}" if password else ""
        return (
            f"host={primary.host} port={primary.port} user={REPLICATOR}{secret} "
            f"sslmode=verify-full sslrootcert={self.ca} application_name={self.name}"
        )

    def start(self) -> None:
        self.proc = procs.spawn(
            [
                f"{PG_BIN}/postgres",
                "-D",
                str(self.data),
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={self.sockets}",
            ],
            self.log,
            user=OS_USER,
        )

    def wait_ready(self) -> None:
        procs.wait_until(self._accepting, f"postgres {self.name}", self.proc, self.log)

    def _accepting(self) -> bool:
        ready = subprocess.run(
            [f"{PG_BIN}/pg_isready", "-q", "-h", str(self.sockets), "-p", str(self.port)],
            user=OS_USER,
            check=False,
        )
        return ready.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        procs.stop(self.proc, STOP_SIGNALS[mode])
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the local socket; the SQL goes on stdin, not argv."""
        return procs.run_as(
            OS_USER,
            [
                f"{PG_BIN}/psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.sockets),
                "-p",
                str(self.port),
                "-d",
                database,
            ],
            stdin=sql,
        )

    def setup_roles(self) -> None:
        self.psql(SETUP_SQL)

    def promote(self) -> None:
        self.psql("SELECT pg_promote(true, 30)")

    def is_in_recovery(self) -> bool:
        return self.psql("SELECT pg_is_in_recovery()").strip() == "t"

    def set_synchronous(self, standby: str | None) -> None:
        """Make `standby` (an application_name) synchronous, as Multi-AZ; None makes it async."""
        value = f"'{standby}'" if standby else "''"
        self.psql(f"ALTER SYSTEM SET synchronous_standby_names = {value}; SELECT pg_reload_conf();")
        if standby:
            procs.wait_until(
                lambda: (
                    self.psql(
                        "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
                    ).strip()
                    == "1"
                ),
                f"synchronous standby {standby}",
                self.proc,
                self.log,
            )

    def remove(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.sockets, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<Postgres {self.name} port={self.port} pid={self.proc and self.proc.pid}>"


def executable_present() -> bool:
    return os.path.exists(f"{PG_BIN}/postgres")
