"""MariaDB for the bed, configured like RDS for MySQL.

TLS with `require_secure_transport=ON`, a password user, and an IAM user authenticated
through the PAM plugin with the cleartext client plugin, which is how RDS MySQL takes
IAM tokens. Runs as the `mysql` OS user; administration goes through the local socket
as the `root` account (unix_socket auth), with SQL on stdin.

The PAM plugin is v2 (`auth_pam.so`), which runs each login's PAM conversation in a
helper process, `auth_pam_tool`, found at `<plugin_dir>/auth_pam_tool_dir/`. The v1
plugin runs PAM in the server's own threads, and pam_python (which runs the token
verifier) crashes the server when two logins run at once. The server runs with a
`plugin_dir` of the bed's own: links to the system's plugins, and a copy of the tool
that scripts/setup.sh keeps in the repository's cache, taken from the Debian package of
the installed server. The copy is not setuid: it runs PAM as `mysql`, which is all the
verifier needs (it reads its configuration and appends to its log).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from bed import procs
from bed.certs import ServerCert

OS_USER = "mysql"
DATABASE = "app"
APP_USER, APP_PASSWORD = "app_user", "app-user-password-0"
IAM_USER = "iam_user"
PAM_PLUGIN = "auth_pam.so"
TOOL_DIR, TOOL = "auth_pam_tool_dir", "auth_pam_tool"
# mariadbd starts the PAM helper with an empty environment; under a moved clock
# (libfaketime) the bed gives it these back, so the token verifier sees the same time.
FAKETIME_VARIABLES = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC", "NO_FAKE_STAT")
# Where scripts/setup.sh keeps the tool, one directory per server version.
TOOL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bed"


@functools.cache
def server_facts() -> tuple[str, Path]:
    """The server's version and its compiled-in plugin directory."""
    out = subprocess.run(
        [procs.binary("mariadbd", "/usr/sbin"), "--no-defaults", "--verbose", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    # The variables table at the end: a name at the start of the line, then its value.
    rows = [line.split(None, 1) for line in out.splitlines() if line[:1].isalpha()]
    facts = {row[0]: row[1].strip() for row in rows if len(row) == 2}
    version, plugin_dir = facts.get("version"), facts.get("plugin-dir")
    if not version or not plugin_dir:
        raise procs.BedError("mariadbd --verbose --help shows no version or plugin-dir")
    return version, Path(plugin_dir)


def cached_tool() -> Path:
    """The copy of `auth_pam_tool` for the installed server, kept by scripts/setup.sh."""
    return TOOL_CACHE / f"mariadb-{server_facts()[0]}" / TOOL


def missing_tool() -> str | None:
    """None if the PAM plugin's helper is at hand, else why not."""
    try:
        tool = cached_tool()
    except procs.BedError as exc:
        return str(exc)
    if not tool.is_file():
        return f"{TOOL} for MariaDB {server_facts()[0]} not found; run scripts/setup.sh"
    return None


def server_conf(
    datadir: Path,
    socket: Path,
    port: int,
    cert: ServerCert,
    ca: Path,
    plugin_dir: Path,
    tmpdir: Path,
) -> str:
    return f"""[mariadbd]
datadir = {datadir}
plugin_dir = {plugin_dir}
socket = {socket}
port = {port}
bind-address = 127.0.0.1
pid-file = {datadir}/mariadbd.pid
# Its own temporary directory: beds that bootstrap at the same time in a shared /tmp
# collide on MariaDB's temporary table files ("Unknown table 'mysql.tmp_user_sys'").
tmpdir = {tmpdir}
skip-name-resolve
skip-log-bin
ssl-ca = {ca}
ssl-cert = {cert.cert}
ssl-key = {cert.key}
tls_version = TLSv1.2,TLSv1.3
require_secure_transport = ON
plugin-load-add = {PAM_PLUGIN}
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
        self.plugin_dir = root / "mariadb-plugins"
        self.socket = root / "mariadb-sock" / "mysqld.sock"
        self.tmp = root / "mariadb-tmp"
        self.conf = root / "mariadb.cnf"
        self.log = root / "mariadb.log"
        self.port = procs.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def create(self) -> None:
        for d in (self.data, self.socket.parent, self.tmp):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(mode=0o750)
            procs.chown(d, OS_USER)
        self.make_plugin_dir()
        self.conf.write_text(
            server_conf(
                self.data, self.socket, self.port, self.cert, self.ca, self.plugin_dir, self.tmp
            )
        )
        procs.run_as(
            OS_USER,
            [
                "mariadb-install-db",
                f"--defaults-file={self.conf}",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ],
        )

    def make_plugin_dir(self) -> None:
        """The server's own plugin_dir: links to the system's plugins, and the PAM helper.

        Nobody but root can write to `auth_pam_tool_dir` or the tool in it. Everyone may
        run the tool, since without the setuid bit it only has its caller's rights.
        """
        reason = missing_tool()
        if reason:
            raise procs.BedError(reason)
        _, system_dir = server_facts()
        shutil.rmtree(self.plugin_dir, ignore_errors=True)
        tool_dir = self.plugin_dir / TOOL_DIR
        tool_dir.mkdir(parents=True)
        for plugin in system_dir.glob("*.so"):
            (self.plugin_dir / plugin.name).symlink_to(plugin)
        tool = tool_dir / TOOL
        shutil.copyfile(cached_tool(), tool)
        clock = {k: v for k, v in os.environ.items() if k in FAKETIME_VARIABLES}
        if "FAKETIME" in clock:  # scripts/clock.sh: the helper must see the moved clock too
            tool = tool.rename(tool.with_name(f"{TOOL}.real"))
            exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in clock.items())
            (tool_dir / TOOL).write_text(f"#!/bin/sh\n{exports}exec {shlex.quote(str(tool))}\n")
        for path in (self.plugin_dir, tool_dir, *tool_dir.iterdir()):
            path.chmod(0o755)  # whatever the umask: the server runs as `mysql`

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
