"""PgBouncer as the RDS Proxy stand-in: transaction pooling, TLS on both sides.

Two instances share one backend. The password front end takes scram logins checked
against its userlist. The IAM front end takes tokens checked through PAM (the verifier)
and, like RDS Proxy, reaches the database with credentials of its own. Both verify the
database's certificate (verify-full). PgBouncer refuses to run as root, so it runs as
the `postgres` OS user.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bed import procs
from bed.certs import ServerCert
from bed.postgres import APP_PASSWORD, APP_USER, DATABASE, IAM_USER, OS_USER

POOL_SIZE = 5


def config(
    name: str, root: Path, port: int, backend_port: int, auth: str, cert: ServerCert, ca: Path
) -> str:
    if auth == "pam":
        # The client proves itself with a token; the proxy logs in with its own secret.
        databases = (
            f"{DATABASE} = host=127.0.0.1 port={backend_port} dbname={DATABASE} "
            f"user={APP_USER} password={APP_PASSWORD}"
        )
        auth_lines = "auth_type = pam"
    else:
        databases = f"{DATABASE} = host=127.0.0.1 port={backend_port} dbname={DATABASE}"
        auth_lines = f"auth_type = scram-sha-256\nauth_file = {root / f'{name}.users'}"
    return f"""[databases]
{databases}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pidfile =
{auth_lines}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = require
client_tls_cert_file = {cert.cert}
client_tls_key_file = {cert.key}
client_tls_protocols = tlsv1.2,tlsv1.3
server_tls_sslmode = verify-full
server_tls_ca_file = {ca}
server_tls_protocols = tlsv1.2,tlsv1.3
"""


class PgBouncer:
    """One PgBouncer front end; `auth` is "scram" (password users) or "pam" (IAM tokens)."""

    def __init__(self, root: Path, name: str, auth: str, cert: ServerCert, ca: Path) -> None:
        self.root, self.name, self.auth, self.cert, self.ca = root, name, auth, cert, ca
        self.conf = root / f"{name}.ini"
        self.log = root / f"{name}.log"
        self.port = procs.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.users = (APP_USER,) if auth == "scram" else (IAM_USER,)

    def start(self, backend_port: int) -> None:
        self.conf.write_text(
            config(
                self.name,
                self.root,
                self.port,
                backend_port,
                "pam" if self.auth == "pam" else "scram",
                self.cert,
                self.ca,
            )
        )
        users = self.root / f"{self.name}.users"
        users.write_text(f'"{APP_USER}" "{APP_PASSWORD}"\n')
        for path in (self.conf, users):
            path.chmod(0o600)
            procs.chown(path, OS_USER)
        self.proc = procs.spawn(
            [procs.binary("pgbouncer", "/usr/sbin"), str(self.conf)], self.log, user=OS_USER
        )

    def wait_ready(self) -> None:
        procs.wait_until(
            lambda: procs.port_open(self.port), f"pgbouncer {self.name}", self.proc, self.log
        )

    def stop(self) -> None:
        procs.stop(self.proc)
        self.proc = None

    def __repr__(self) -> str:
        return f"<PgBouncer {self.name} port={self.port} pid={self.proc and self.proc.pid}>"
