"""`securedb token` and `securedb shell` with the real psql and mariadb clients on the bed,
and what every command shares: flags, SECUREDB_* variables, exit statuses.

Commands that print a token or replace themselves with a client run as real processes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bed import certs, mariadb, postgres
from bed.bed import Bed
from bed.moto import SECRET_ACCESS_KEY
from securedb import cli
from securedb.cli import shell
from securedb.config import Config
from securedb.credentials.base import Credential
from securedb.errors import ConfigError

PG_REAL = f"postgresql://{postgres.IAM_USER}@{certs.PG_INSTANCE}:5432/app"
MY_REAL = f"mysql://{mariadb.IAM_USER}@{certs.MYSQL_INSTANCE}:3306/app"


def securedb(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The securedb command as a process of its own, `stdin` its input."""
    return subprocess.run(
        [sys.executable, "-m", "securedb.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
        check=False,
    )


def client(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed; scripts/setup.sh installs it")
    return path


def pg_url(bed: Bed) -> str:
    return f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app"


def my_url(bed: Bed) -> str:
    return f"mysql://{mariadb.IAM_USER}@127.0.0.1:{bed.mariadb.port}/app"


def psql_as(token: str, conninfo: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [client("psql"), conninfo, "-XAtc", sql],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": token},
        timeout=30,
        check=False,
    )


# securedb token


@pytest.mark.bed
def test_token_is_one_line_and_logs_in_with_psql_under_verify_full(
    bed: Bed, aws_env: dict[str, str]
) -> None:
    done = securedb("token", pg_url(bed))  # --auth defaults to iam for this command
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    token = done.stdout.removesuffix("\n")
    assert "\n" not in token
    assert token.startswith(f"localhost:{bed.primary.port}/?Action=connect&DBUser=iam_user&")
    conninfo = f"host=localhost port={bed.primary.port} dbname=app user=iam_user " + (
        f"sslmode=verify-full sslrootcert={bed.pki.ca}"
    )
    login = psql_as(
        token, conninfo, "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    )
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "iam_user|t"


@pytest.mark.bed
def test_token_through_a_tunnel_is_signed_for_the_real_endpoint(
    bed: Bed, aws_env: dict[str, str]
) -> None:
    """psql goes to the forward by hostaddr, verifies and sends the real name."""
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    done = securedb("token", PG_REAL, "--tunnel", f"127.0.0.1:{fwd.port}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{certs.PG_INSTANCE}:5432/?Action=connect&")
    conninfo = (
        f"host={certs.PG_INSTANCE} hostaddr=127.0.0.1 port={fwd.port} dbname=app "
        f"user=iam_user sslmode=verify-full sslrootcert={bed.pki.ca}"
    )
    login = psql_as(done.stdout.strip(), conninfo, "SELECT current_user")
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "iam_user"
    assert fwd.accepted >= 1


@pytest.mark.bed
def test_token_logs_in_with_mariadb_under_verify_full(bed: Bed, aws_env: dict[str, str]) -> None:
    done = securedb("token", my_url(bed), "--auth", "iam")
    assert done.returncode == 0, done.stderr
    login = subprocess.run(
        [
            client("mariadb"),
            "--no-defaults",
            "--protocol=TCP",
            "--host=127.0.0.1",
            f"--port={bed.mariadb.port}",
            "--user=iam_user",
            f"--ssl-ca={bed.pki.ca}",
            "--ssl-verify-server-cert",
            "-N",
            "-e",
            "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_version'",
            "app",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MYSQL_PWD": done.stdout.strip()},
        timeout=30,
        check=False,
    )
    assert login.returncode == 0, login.stderr
    user, tls_version = login.stdout.splitlines()
    assert user == "iam_user@%"
    assert tls_version.split()[1].startswith("TLSv1.")


def test_token_without_aws_credentials_fails_on_stderr_only(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": "us-east-1",
    }
    done = securedb("token", PG_REAL, env=env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.count("\n") == 1
    assert "no AWS credentials" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--auth", "secret", "--secret-id", "prod/app"], "prints IAM auth tokens"),
        (["--iam-token-ttl", "5000"], "bad value for --iam-token-ttl: '5000'"),
        (["--tunnel", "nowhere"], "bad value for --tunnel: 'nowhere'"),
        (["--region", "Mars"], "bad value for --region: 'Mars'"),
    ],
)
def test_token_configuration_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["token", PG_REAL, *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("securedb: ")
    assert err.count("\n") == 1
    assert message in err


def test_securedb_variables_fill_in_and_flags_win(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SECUREDB_URL", PG_REAL)
    monkeypatch.setenv("SECUREDB_AUTH", "secret")
    assert cli.main(["token"]) == 2  # the variable's auth applies: no secret_id
    assert capsys.readouterr().err.startswith("securedb: --auth secret ")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert cli.main(["token", "--auth", "iam"]) == 0  # the flag wins over the variable
    assert capsys.readouterr().out.startswith(f"{certs.PG_INSTANCE}:5432/?Action=connect")


def test_client_arguments_are_only_for_shell(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["token", PG_REAL, "--", "-c", "SELECT 1"])
    assert exit_info.value.code == 2
    assert "only for `securedb shell`" in capsys.readouterr().err


# Errors name the command's flags

HOST_URL = "postgresql://app@db.example.com/app"


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AWS keys but no region anywhere, and no SECUREDB_* variable."""
    for name in list(os.environ):
        if name.startswith("SECUREDB_") or name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret")


@pytest.mark.parametrize(
    ("args", "status", "line"),
    [
        (
            ["token", "postgresql://db.example.com/app"],
            2,
            "--auth iam needs a user in the URL: postgresql://USER@host/db",
        ),
        (
            ["check", HOST_URL],
            2,
            "say how to authenticate: --auth iam for IAM tokens, --secret-id for Secrets "
            "Manager, or a password in the URL (local development)",
        ),
        (
            ["token", HOST_URL, "--auth", "iam", "--secret-id", "prod/app"],
            2,
            "--secret-id given with --auth iam; drop one of them",
        ),
        (
            ["token", PG_REAL, "--iam-token-ttl", "3600"],
            2,
            "bad value for --iam-token-ttl: '3600'; must be between 1 and 900",
        ),
        (
            ["token", PG_REAL, "--tunnel", "127.0.0.1:99999"],
            2,
            "bad value for --tunnel port: '99999'; must be between 1 and 65535",
        ),
        (
            ["token", HOST_URL],
            1,
            "no AWS region for IAM token for app@db.example.com:5432: pass --region, set "
            "AWS_REGION, or use an endpoint name like *.us-east-1.rds.amazonaws.com",
        ),
    ],
    ids=["no-user", "no-auth", "secret-with-iam", "ttl", "tunnel-port", "no-region"],
)
def test_errors_name_the_flags_not_the_python_options(
    no_region: None,
    args: list[str],
    status: int,
    line: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(args) == status
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"securedb: {line}\n"


def test_a_path_in_an_error_keeps_its_spelling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "ca_bundle.pem")
    assert cli.main(["token", PG_REAL, "--ca-bundle", missing]) == 2
    assert capsys.readouterr().err == (
        f"securedb: --ca-bundle {missing!r} is not a file; pass the path of a PEM trust "
        "store, or leave it out to use the bundled RDS CA\n"
    )


@pytest.mark.parametrize(
    ("message", "said"),
    [
        (
            "the certificate of 127.0.0.1:5432 does not name 127.0.0.1: the server's "
            "certificate names the real endpoint, so connect to that name and send the socket "
            "to the local forward with tunnel='127.0.0.1:PORT'",
            "the certificate of 127.0.0.1:5432 does not name 127.0.0.1: the server's "
            "certificate names the real endpoint, so connect to that name and send the socket "
            "to the local forward with --tunnel 127.0.0.1:PORT",
        ),
        (
            "then pass ca_bundle= with AWS's current global-bundle.pem, or run `securedb ca "
            "refresh`; for a server of your own, pass ca_bundle= with its CA",
            "then pass --ca-bundle with AWS's current global-bundle.pem, or run `securedb ca "
            "refresh`; for a server of your own, pass --ca-bundle with its CA",
        ),
        (
            "the URL has a password but auth='iam'; remove the password, or use auth='password'",
            "the URL has a password but --auth iam; remove the password, or use --auth password",
        ),
        (
            "bad value for auth: 'token'; use one of 'iam', 'secret', 'password'",
            "bad value for --auth: 'token'; use one of 'iam', 'secret', 'password'",
        ),
        ("region must be a non-empty string", "--region must be a non-empty string"),
        (
            "bad value for connect_timeout: '0'; must be between 0.1 and 3600.0",
            "bad value for --connect-timeout: '0'; must be between 0.1 and 3600.0",
        ),
        (
            "bad value for refresh: 'x'; use one of 'background', 'lazy'",
            "bad value for --refresh: 'x'; use one of 'background', 'lazy'",
        ),
        # Not an option of the command, or inside a quoted value: left as it is.
        ("unknown option foo; pass driver arguments in connect_args=", None),
        ("driver argument sslmode='disable' would weaken TLS", None),
        ("secret 'prod/secret_id=auth' has no host and the URL names none", None),
        ("no AWS region for the secret 'x': check the secret's region", None),
    ],
    ids=[
        "tunnel-value",
        "ca-bundle-twice",
        "auth-values",
        "bad-auth",
        "subject",
        "connect-timeout",
        "refresh",
        "not-a-flag",
        "driver-argument",
        "quoted",
        "english",
    ],
)
def test_flag_spelling_of_library_messages(message: str, said: str | None) -> None:
    from securedb.cli._errors import flag_spelling

    assert flag_spelling(message) == (message if said is None else said)


def test_token_needs_no_driver(tmp_path: Path) -> None:
    """`securedb token` signs with botocore alone: no driver extra is needed."""
    code = (
        "import sys\n"
        "for name in ('psycopg', 'psycopg_pool', 'pymysql', 'sqlalchemy'):\n"
        "    sys.modules[name] = None  # importing one raises ImportError\n"
        "from securedb import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example-secret",
    }
    for url, host in (
        (PG_REAL, f"{certs.PG_INSTANCE}:5432"),
        (MY_REAL, f"{certs.MYSQL_INSTANCE}:3306"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", code, "token", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert done.stdout.startswith(f"{host}/?Action=connect")


# securedb shell


RECORDER = """#!/bin/sh
# Records what the client is started with, then runs the real client.
printf '%s\\0' "$@" > "$SECUREDB_TEST_RECORD/argv"
env -0 > "$SECUREDB_TEST_RECORD/env"
if [ -n "$PGPASSFILE" ]; then
    cat "$PGPASSFILE" > "$SECUREDB_TEST_RECORD/pgpass"
    stat -c %a "$PGPASSFILE" > "$SECUREDB_TEST_RECORD/pgpass.mode"
fi
exec {real} "$@"
"""


def recorder(tmp_path: Path, name: str) -> tuple[dict[str, str], Path]:
    """A wrapper named `name` first on PATH, and the directory it records into."""
    real = client(name)
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir(exist_ok=True)
    record.mkdir(exist_ok=True)
    wrapper = bin_dir / name
    wrapper.write_text(RECORDER.format(real=real))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SECUREDB_TEST_RECORD": str(record),
    }
    return env, record


def recorded(record: Path) -> tuple[list[str], dict[str, str]]:
    argv = (record / "argv").read_bytes().split(b"\0")[:-1]
    pairs = (item.split(b"=", 1) for item in (record / "env").read_bytes().split(b"\0") if item)
    return [a.decode() for a in argv], {k.decode(): v.decode() for k, v in pairs}


def recorded_password(record: Path, client_env: dict[str, str]) -> str:
    """The password in psql's password file, checked private and gone once psql exited."""
    assert (record / "pgpass.mode").read_text().strip() == "600"
    assert not Path(client_env["PGPASSFILE"]).parent.exists()
    line = (record / "pgpass").read_text().removesuffix("\n")
    fields = re.split(r"(?<!\\):", line, maxsplit=4)
    return re.sub(r"\\(.)", r"\1", fields[4])


def conninfo_of(argv: list[str]) -> dict[str, str]:
    """The parameters of psql's --dbname conninfo, as libpq reads them."""
    from psycopg.conninfo import conninfo_to_dict

    assert argv[0] == "-X"
    return {k: str(v) for k, v in conninfo_to_dict(argv[1].removeprefix("--dbname=")).items()}


@pytest.mark.bed
def test_shell_runs_psql_with_the_token_in_a_password_file_not_its_argv(
    bed: Bed, aws_env: dict[str, str], tmp_path: Path
) -> None:
    env, record = recorder(tmp_path, "psql")
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    done = securedb(
        "shell",
        PG_REAL,
        "--auth",
        "iam",
        "--ca-bundle",
        str(bed.pki.ca),
        "--tunnel",
        f"localhost:{fwd.port}",
        "--",
        "-XAtc",
        "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "iam_user|t"
    argv, client_env = recorded(record)
    assert "PGPASSWORD" not in client_env  # libpq would send it to any host
    token = recorded_password(record, client_env)
    assert token.startswith(f"{certs.PG_INSTANCE}:5432/?Action=connect&DBUser=iam_user&")
    line = (record / "pgpass").read_text()
    assert line.startswith(f"{certs.PG_INSTANCE}:{fwd.port}:*:iam_user:")  # name, forward
    assert not any(token in arg or "X-Amz" in arg for arg in [*argv, *client_env.values()])
    conninfo = conninfo_of(argv)
    assert conninfo["host"] == certs.PG_INSTANCE
    assert (conninfo["hostaddr"], conninfo["port"]) == ("127.0.0.1", str(fwd.port))
    assert (conninfo["sslmode"], conninfo["sslrootcert"]) == ("verify-full", str(bed.pki.ca))
    assert argv[2:] == [
        "-XAtc",
        "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    ]
    assert fwd.accepted >= 1


@pytest.mark.bed
def test_shell_exits_with_the_clients_status(
    bed: Bed, aws_env: dict[str, str], tmp_path: Path
) -> None:
    done = securedb(
        "shell",
        pg_url(bed),
        "--auth",
        "iam",
        "--ca-bundle",
        str(bed.pki.ca),
        "--",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        stdin="SELECT 1/0;\n",  # -f is refused: a script on standard input instead
    )
    assert done.returncode == 3, done.stderr  # psql: an error in a script with ON_ERROR_STOP
    assert "division by zero" in done.stderr


@pytest.mark.bed
def test_shell_waits_through_ctrl_c_and_passes_sigterm_on(
    bed: Bed, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """securedb runs psql as a child so that it can remove the password file after it:
    a SIGINT (which the terminal sends psql too) must not end securedb first; a SIGTERM
    for securedb alone ends psql, then securedb, which reports it as a shell would."""
    env, record = recorder(tmp_path, "psql")
    command = ["shell", pg_url(bed), "--auth", "iam", "--ca-bundle", str(bed.pki.ca)]
    with subprocess.Popen(
        [sys.executable, "-m", "securedb.cli", *command, "--", "-c", "SELECT pg_sleep(60)"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as shell_process:
        try:
            deadline = time.monotonic() + 30
            while not (record / "pgpass.mode").exists():  # psql has started
                assert shell_process.poll() is None, shell_process.communicate()[1]
                assert time.monotonic() < deadline, "psql did not start"
                time.sleep(0.05)
            shell_process.send_signal(signal.SIGINT)
            shell_process.send_signal(signal.SIGTERM)
            assert shell_process.wait(timeout=30) == 128 + signal.SIGTERM  # not 130: SIGINT
        finally:
            if shell_process.poll() is None:
                os.killpg(shell_process.pid, signal.SIGKILL)
    _, client_env = recorded(record)
    assert not Path(client_env["PGPASSFILE"]).parent.exists()


@pytest.mark.bed
def test_shell_runs_mariadb_verify_full_with_the_token_in_its_environment(
    bed: Bed, aws_env: dict[str, str], tmp_path: Path
) -> None:
    env, record = recorder(tmp_path, "mariadb")
    done = securedb(
        "shell",
        f"mysql://{mariadb.IAM_USER}@localhost:{bed.mariadb.port}/app",
        "--auth",
        "iam",
        "--ca-bundle",
        str(bed.pki.ca),
        "--",
        "-N",
        "-e",
        "SELECT CURRENT_USER()",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "iam_user@%"
    argv, client_env = recorded(record)
    token = client_env["MYSQL_PWD"]
    assert token.startswith(f"localhost:{bed.mariadb.port}/?Action=connect&")
    assert not any(token in arg or "X-Amz" in arg for arg in argv)
    assert {"--protocol=TCP", "--ssl-verify-server-cert", f"--ssl-ca={bed.pki.ca}"} <= set(argv)
    assert argv[0] == "--no-defaults"


@pytest.mark.bed
def test_shell_with_an_rds_managed_secret_alone(
    bed: Bed, aws_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.test_connect import make_secret

    env, record = recorder(tmp_path, "psql")
    secret = make_secret(bed, "rds/pg", "postgres")
    done = securedb(
        "shell",
        "--secret-id",
        secret,
        "--ca-bundle",
        str(bed.pki.ca),
        "--",
        "-XAtc",
        "SELECT current_user",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == postgres.APP_USER
    argv, client_env = recorded(record)
    assert recorded_password(record, client_env) == postgres.APP_PASSWORD
    assert not any(postgres.APP_PASSWORD in arg for arg in [*argv, *client_env.values()])


def test_shell_refuses_a_tunnel_for_mysql_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"mysql://iam_user@{certs.MYSQL_INSTANCE}:3306/app"
    assert cli.main(["shell", url, "--auth", "iam", "--tunnel", "127.0.0.1:3307"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "verify the certificate against the host name they connect to" in err
    assert f"'127.0.0.1 {certs.MYSQL_INSTANCE}' in /etc/hosts" in err


@pytest.mark.bed
def test_shell_refuses_a_meta_command_that_would_connect_elsewhere(
    bed: Bed, aws_env: dict[str, str]
) -> None:
    """`-c '\\connect …'` ran after the verified login and sent the token in clear."""
    from tests.fakes import FakeServer
    from tests.test_shell_args import pg_asking_password

    with FakeServer(pg_asking_password()) as evil:
        done = securedb(
            "shell",
            pg_url(bed),
            "--auth",
            "iam",
            "--ca-bundle",
            str(bed.pki.ca),
            "--",
            "-c",
            f"\\connect 'host=127.0.0.1 port={evil.port} user=iam_user dbname=app sslmode=disable'",
        )
    assert b"X-Amz-Signature" not in evil.received
    assert done.returncode == 2, done.stderr
    assert "client option -c (argument 1) is not passed to psql" in done.stderr


@pytest.mark.bed
def test_shell_psql_connect_elsewhere_finds_no_password(bed: Bed, aws_env: dict[str, str]) -> None:
    """A \\connect read from input (as if typed) to another host gets no password: the
    password file holds it for the endpoint's name, port and user only."""
    from tests.fakes import FakeServer
    from tests.test_shell_args import pg_asking_password

    with FakeServer(pg_asking_password()) as evil:
        done = securedb(
            "shell",
            pg_url(bed),
            "--auth",
            "iam",
            "--ca-bundle",
            str(bed.pki.ca),
            "--",
            "-Atw",
            stdin="SELECT current_user;\n"
            f"\\connect 'host=127.0.0.1 port={evil.port} user=iam_user dbname=app "
            "sslmode=disable'\n",
        )
    assert done.stdout.splitlines()[0] == "iam_user"  # the verified login worked
    assert b"user\0iam_user" in evil.received  # the \\connect did go there...
    assert b"X-Amz-Signature" not in evil.received  # ...without the token
    assert "no password supplied" in done.stderr


CRED = Credential(user="iam_user", password="token-value")


def build(
    engine: str, args: list[str], environ: dict[str, str], tmp_path: Path
) -> tuple[list[str], dict[str, str]]:
    """The client's argv and environment, as `securedb shell` builds them."""
    cfg = Config.from_url(f"{engine}://iam_user@{certs.PG_INSTANCE}/app", auth="iam")
    if engine == "postgresql":
        return shell.psql_command(cfg, CRED, args, environ, str(tmp_path / "pgpass"))
    return shell.mysql_command(cfg, CRED, args, environ)


@pytest.mark.parametrize(
    ("engine", "args"),
    [
        ("postgresql", ["-h", "evil.example.com"]),
        ("postgresql", ["--host=evil.example.com"]),
        ("postgresql", ["--hos=evil.example.com"]),  # getopt takes unambiguous prefixes
        ("postgresql", ["-Uadmin"]),
        ("postgresql", ["-d", "sslmode=disable"]),
        ("mysql", ["--skip-ssl-verify-server-cert"]),
        ("mysql", ["--ssl-verify-server-cert=0"]),
        ("mysql", ["--loose-skip-ssl"]),
        ("mysql", ["-h127.0.0.2"]),
        ("mysql", ["--password=x"]),
        ("mysql", ["--defaults-extra-file=/tmp/my.cnf"]),
    ],
)
def test_shell_refuses_client_options_that_are_securedbs(
    engine: str, args: list[str], tmp_path: Path
) -> None:
    """More in test_shell_args.py."""
    with pytest.raises(ConfigError, match="is not passed to"):
        build(engine, args, {}, tmp_path)
    assert not (tmp_path / "pgpass").exists()


@pytest.mark.parametrize(
    ("engine", "args"),
    [
        ("postgresql", ["-X", "-P", "pager=off", "-c", "SELECT 1"]),
        ("mysql", ["-N", "-e", "SELECT 1"]),
    ],
)
def test_shell_passes_other_client_options_through(
    engine: str, args: list[str], tmp_path: Path
) -> None:
    if not shutil.which("psql" if engine == "postgresql" else "mariadb"):
        pytest.skip("client not installed")
    argv, env = build(engine, args, {"PGHOSTADDR": "10.9.9.9", "HOME": "/home/x"}, tmp_path)
    assert argv[-len(args) :] == args
    assert "token-value" not in " ".join(argv)
    assert env["HOME"] == "/home/x"
    if engine == "postgresql":
        assert "PGHOSTADDR" not in env  # it would send libpq elsewhere than the conninfo says


def test_psql_conninfo_quotes_values(tmp_path: Path) -> None:
    if not shutil.which("psql"):
        pytest.skip("psql not installed")
    bundle = tmp_path / "it's a bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = Config.from_url(
        f"postgresql://iam_user@{certs.PG_INSTANCE}/my%20db", auth="iam", ca_bundle=str(bundle)
    )
    passfile = str(tmp_path / "pgpass")
    argv, env = shell.psql_command(cfg, CRED, [], {}, passfile)
    quoted = str(bundle).replace("'", "\\'")
    assert f"sslrootcert='{quoted}'" in argv[2]
    assert "dbname='my db'" in argv[2]
    assert (env["PGPASSFILE"], env["PGSSLROOTCERT"]) == (passfile, str(bundle))
    assert "PGPASSWORD" not in env
    assert SECRET_ACCESS_KEY not in argv[2]
