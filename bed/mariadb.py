"""MariaDB for the bed, configured like RDS for MySQL.

TLS with `require_secure_transport=ON`, a password user, and an IAM user authenticated
through the PAM plugin with the cleartext client plugin, which is how RDS MySQL takes
IAM tokens. Runs as the `mysql` OS user; administration goes through the local socket
as the `root` account (unix_socket auth), with SQL on stdin.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bed import procs
from bed.certs import ServerCert

OS_USER = "mysql"
DATABASE = "app"
APP_USER, APP_PASSWORD = "app_user", "app-user-password-0"
IAM_USER = "iam_user"


def server_conf(datadir: Path, socket: Path, port: int, cert: ServerCert, ca: Path) -> str:
    return f"""[mariadbd]
datadir = {datadir}
socket = {socket}
port = {port}
bind-address = 127.0.0.1
pid-file = {datadir}/mariadbd.pid
skip-name-resolve
skip-log-bin
ssl-ca = {ca}
ssl-cert = {cert.cert}
ssl-key = {cert.key}
tls_version = TLSv1.2,TLSv1.3
require_secure_transport = ON
plugin-load-add = auth_pam_v1.so
pam_use_cleartext_plugin = ON
max_connections = 300
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 2
"""


def setup_sql(pam_service: str) -> str:
    return f"""
CREATE DATABASE {DATABASE};
CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}' REQUIRE SSL;
CREATE USER '{IAM_USER}'@'%' IDENTIFIED VIA pam USING '{pam_service}' REQUIRE SSL;
GRANT ALL ON {DATABASE}.* TO '{APP_USER}'@'%', '{IAM_USER}'@'%';
"""


class MariaDB:
    def __init__(self, root: Path, cert: ServerCert, ca: Path, pam_service: str) -> None:
        self.cert, self.ca, self.pam_service = cert, ca, pam_service
        self.data = root / "mariadb"
        self.socket = root / "mariadb-sock" / "mysqld.sock"
        self.conf = root / "mariadb.cnf"
        self.log = root / "mariadb.log"
        self.port = procs.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def create(self) -> None:
        for d in (self.data, self.socket.parent):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(mode=0o750)
            procs.chown(d, OS_USER)
        self.conf.write_text(server_conf(self.data, self.socket, self.port, self.cert, self.ca))
        procs.run_as(
            OS_USER,
            [
                "mariadb-install-db",
                f"--defaults-file={self.conf}",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ],
        )

    def start(self) -> None:
        self.proc = procs.spawn(
            [procs.binary("mariadbd", "/usr/sbin"), f"--defaults-file={self.conf}"],
            self.log,
            user=OS_USER,
        )

    def wait_ready(self) -> None:
        procs.wait_until(
            lambda: self.socket.exists() and procs.port_open(self.port),
            "mariadbd",
            self.proc,
            self.log,
        )

    def stop(self) -> None:
        procs.stop(self.proc)
        self.proc = None

    def sql(self, sql: str) -> str:
        """Run SQL as root over the local socket; the SQL goes on stdin, not argv."""
        return procs.run_as(
            "root",
            ["mariadb", "--no-defaults", "-S", str(self.socket), "-u", "root", "-N", "-B"],
            stdin=sql,
        )

    def setup_users(self) -> None:
        self.sql(setup_sql(self.pam_service))

    def __repr__(self) -> str:
        return f"<MariaDB port={self.port} pid={self.proc and self.proc.pid}>"
