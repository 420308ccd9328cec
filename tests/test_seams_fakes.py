"""The seams' findings, reproduced: a recording server where the credential would go.

Each test sends a connection, through a public entry point, where a driver argument, a
tunnel, a host list or libpq's environment could take the socket: to a fake server on
another address (``127.0.0.2``, or a remote name the test's DNS sends there) that takes a
credential however it comes (`tests.fakes`: a PostgreSQL server that asks for the
password in clear; a MySQL server that asks for ``sha256_password`` and reads the
password over TLS, or decrypts it without). Each checks first that no password or IAM
token reached that server, then that securedb refused with a `ConfigError` naming the
cause (a pool opens its connections in the background: there, the refusal is logged).
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg_pool
import pytest
import trustme

from securedb import errors
from securedb.config import Config
from securedb.credentials import aws
from tests import fakes
from tests.test_django import settings  # noqa: F401  (the fixture configures Django)
from tests.test_seams import PYMYSQL_TLS_VALUES, open_through, weakening, with_query

CANARY = "pw-seams-canary-5b1e"  # the test password: in nothing but the credential
TOKEN = b"X-Amz-Signature="  # in every IAM token
ELSEWHERE = "127.0.0.2"  # another destination than the endpoint (Linux routes 127/8 to lo)
RDS_MYSQL = "mydb-mysql.abc123.eu-west-2.rds.amazonaws.com"
EVIL, BASTION = "evil.example.com", "bastion.example.com"


def unheard(server: fakes.FakeServer) -> None:
    """`server` got neither the test password nor an IAM token."""
    heard = server.heard()
    for secret, what in ((CANARY.encode(), "the password"), (TOKEN, "an IAM token")):
        at = heard.find(secret)
        assert at < 0, f"the fake server caught {what}: …{heard[max(0, at - 48) : at + 48]!r}…"


def outcome(attempt: Callable[[], Any]) -> Exception | None:
    """What `attempt` raised, if anything (checked after what the fake server heard)."""
    try:
        attempt()
    except Exception as exc:
        return exc
    return None


def refused(raised: Exception | None, match: str) -> None:
    assert isinstance(raised, errors.ConfigError), f"not refused: {raised!r}"
    assert re.search(match, str(raised)), str(raised)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remote names that lead to `ELSEWHERE`: a spoofed endpoint, a host in a list, a bastion."""
    names = dict.fromkeys((RDS_MYSQL, EVIL, BASTION), ELSEWHERE)
    monkeypatch.setattr("socket.getaddrinfo", fakes.resolving(names))


@pytest.fixture
def pg_elsewhere() -> Iterator[fakes.FakeServer]:
    with fakes.FakeServer(fakes.pg_cleartext_password, host=ELSEWHERE) as server:
        yield server


@pytest.fixture
def pg_pair() -> Iterator[tuple[fakes.FakeServer, fakes.FakeServer]]:
    """The endpoint (127.0.0.1) and another server on the same port at `ELSEWHERE`."""
    with (
        fakes.FakeServer(fakes.pg_cleartext_password) as endpoint,
        fakes.FakeServer(fakes.pg_cleartext_password, host=ELSEWHERE, port=endpoint.port) as other,
    ):
        yield endpoint, other


@pytest.fixture
def aws_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A key pair to sign IAM tokens with (signing is local), and nothing else of AWS's."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASEAMSFAKE0000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "seams-fake-secret-access-key")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(aws, "_session", None)


@pytest.fixture(scope="module")
def public_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """A CA of the system store (any public CA), and not of securedb's bundle."""
    ca = trustme.CA(organization_name="a public CA")
    pem = tmp_path_factory.mktemp("system-store") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return ca, pem


def django_if(entry: str, request: pytest.FixtureRequest) -> None:
    if entry == "django":
        request.getfixturevalue("settings")


# --- PyMySQL's TLS keys, with values that read as "verify" ------------------------------


@pytest.mark.parametrize("entry", ["connect", "url", "engine", "django"])
@pytest.mark.parametrize(
    ("name", "value"), PYMYSQL_TLS_VALUES, ids=[f"{n}={v!r}" for n, v in PYMYSQL_TLS_VALUES]
)
@pytest.mark.usefixtures("dns")
def test_pymysql_tls_keys_send_no_password_to_an_impostor(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    public_ca: tuple[trustme.CA, Path],
    entry: str,
    name: str,
    value: Any,
) -> None:
    """The endpoint's name leads to an impostor with a certificate for another name from
    a CA of the system store. Given any of these keys PyMySQL drops securedb's context
    for its own: ``ssl_verify_cert=1`` verifies nothing, ``ssl_verify_identity=True``
    trusts the system store and checks no name."""
    django_if(entry, request)
    ca, pem = public_ca
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(EVIL).configure_cert(context)
    with fakes.FakeServer(fakes.mysql_password_catcher(context), host=ELSEWHERE) as impostor:
        url = f"mysql://app:{CANARY}@{RDS_MYSQL}:{impostor.port}/app"
        raised = outcome(lambda: open_through(entry, url, {}, {name: value}))
    unheard(impostor)
    refused(raised, weakening(entry, name, value))


# --- conninfo, dsn and service: parameters that carry parameters ------------------------


@pytest.mark.parametrize("entry", ["connect", "url", "engine", "pool", "async_connect", "django"])
@pytest.mark.parametrize("name", ["conninfo", "dsn", "service"])
def test_postgres_carriers_send_no_password_elsewhere(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pg_elsewhere: fakes.FakeServer,
    entry: str,
    name: str,
) -> None:
    """On loopback with sslmode=disable (local development), a carrier adds a hostaddr.

    psycopg 3 knows no ``dsn`` and refuses it itself, and a pool's ``conninfo`` collides
    with psycopg_pool's own: securedb refuses all three by name, whatever the driver
    would do with them.
    """
    django_if(entry, request)
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[evil]\nhostaddr={ELSEWHERE}\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    value = "evil" if name == "service" else f"hostaddr={ELSEWHERE}"
    url = f"postgresql://app:{CANARY}@localhost:{pg_elsewhere.port}/app"
    args = {"sslmode": "disable", name: value}
    raised = outcome(lambda: open_through(entry, url, {}, args, timeout=2.0))
    unheard(pg_elsewhere)
    refused(raised, f"'{name}' is securedb's")


@pytest.mark.parametrize("entry", ["url", "engine", "django"])
@pytest.mark.usefixtures("aws_keys")
def test_the_reviewed_conninfo_attack(
    request: pytest.FixtureRequest, pg_elsewhere: fakes.FakeServer, entry: str
) -> None:
    """``postgresql://u:pw@localhost/db?sslmode=disable&conninfo=hostaddr%3D127.0.0.2``,
    as it was reported, and the same through engine(connect_args=) and Django's OPTIONS
    with an IAM token."""
    django_if(entry, request)
    args = {"sslmode": "disable", "conninfo": f"hostaddr={ELSEWHERE}"}
    if entry == "url":
        url = f"postgresql://app:{CANARY}@localhost:{pg_elsewhere.port}/app"
        attack = with_query(url, args)
        assert attack.endswith("/app?sslmode=disable&conninfo=hostaddr%3D127.0.0.2")
        raised = outcome(lambda: open_through("connect", attack, {}, {}))
    else:
        url = f"postgresql://iam_user@localhost:{pg_elsewhere.port}/app"
        opts = {"auth": "iam", "region": "us-east-1"}
        raised = outcome(lambda: open_through(entry, url, opts, args))
    unheard(pg_elsewhere)
    refused(raised, "'conninfo' is securedb's")


# --- relaxed TLS when a destination is not this machine ---------------------------------


@pytest.mark.parametrize("entry", ["url", "connect", "engine", "pool", "async_connect", "django"])
@pytest.mark.usefixtures("dns")
def test_postgres_relaxed_tls_through_a_remote_tunnel(
    request: pytest.FixtureRequest, pg_elsewhere: fakes.FakeServer, entry: str
) -> None:
    """``...@localhost/db?sslmode=disable&tunnel=<another machine>:5432``."""
    django_if(entry, request)
    tunnel = f"{BASTION}:{pg_elsewhere.port}"
    url = f"postgresql://app:{CANARY}@localhost:5432/app"
    if entry == "url":
        query = {"sslmode": "disable", "tunnel": tunnel}
        raised = outcome(lambda: open_through("connect", with_query(url, query), {}, {}))
    else:
        opts = {"tunnel": tunnel}
        raised = outcome(lambda: open_through(entry, url, opts, {"sslmode": "disable"}, 2.0))
    unheard(pg_elsewhere)
    refused(raised, "sslmode='disable' would weaken TLS")


@pytest.mark.parametrize("entry", ["connect", "url", "engine", "async_connect", "django"])
@pytest.mark.usefixtures("dns")
def test_mysql_relaxed_tls_through_a_remote_tunnel(
    request: pytest.FixtureRequest, entry: str
) -> None:
    """``ssl_disabled=True`` on a loopback host, with a tunnel to another machine: that
    machine would ask for sha256_password and read the password it encrypts."""
    django_if(entry, request)
    with fakes.FakeServer(fakes.mysql_password_catcher(), host=ELSEWHERE) as other:
        url = f"mysql://app:{CANARY}@127.0.0.1:3306/app"
        opts = {"tunnel": f"{BASTION}:{other.port}"}
        raised = outcome(lambda: open_through(entry, url, opts, {"ssl_disabled": True}))
    unheard(other)
    refused(raised, weakening(entry, "ssl_disabled", True))


@pytest.mark.parametrize("entry", ["connect", "engine", "pool", "async_connect"])
@pytest.mark.usefixtures("dns")
def test_a_host_list_after_a_socket_directory(pg_elsewhere: fakes.FakeServer, entry: str) -> None:
    """``host="/var/run/postgresql,evil.example.com"``: a socket directory made it local;
    libpq would go on to the second host, in plaintext."""

    def attempt() -> Any:
        cfg = Config(
            auth="password",
            engine="postgresql",
            host=f"/var/run/postgresql,{EVIL}",
            port=pg_elsewhere.port,
            user="app",
            password=CANARY,
            dbname="app",
            connect_args={"sslmode": "disable"},
        )
        return open_through(entry, cfg, {}, {}, timeout=2.0)

    raised = outcome(attempt)
    unheard(pg_elsewhere)
    refused(raised, "securedb takes no host lists")


@pytest.mark.bed
@pytest.mark.usefixtures("dns")
def test_a_host_list_in_a_secret(aws_env: dict[str, str], pg_elsewhere: fakes.FakeServer) -> None:
    """The same list, as the ``host`` of an RDS-managed secret (moto's Secrets Manager)."""
    boto3.client("secretsmanager").create_secret(
        Name="rds/seams-fake-host-list",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": f"/var/run/postgresql,{EVIL}",
                "port": pg_elsewhere.port,
                "dbname": "app",
                "username": "app",
                "password": CANARY,
            }
        ),
    )
    opts = {"secret_id": "rds/seams-fake-host-list", "region": "us-east-1"}
    raised = outcome(lambda: open_through("connect", None, opts, {"sslmode": "disable"}))
    unheard(pg_elsewhere)
    refused(raised, "securedb takes no host lists")


# --- libpq's environment ----------------------------------------------------------------


@pytest.mark.parametrize("entry", ["connect", "engine", "pool", "async_connect", "django"])
def test_pghostaddr_sends_no_password_elsewhere(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    pg_pair: tuple[fakes.FakeServer, fakes.FakeServer],
    entry: str,
) -> None:
    """libpq takes PGHOSTADDR for a hostaddr it is not given: securedb gives an empty one.
    The connection goes to the endpoint (a fake too, refusing the login)."""
    django_if(entry, request)
    endpoint, other = pg_pair
    monkeypatch.setenv("PGHOSTADDR", ELSEWHERE)
    url = f"postgresql://app:{CANARY}@127.0.0.1:{endpoint.port}/app"
    raised = outcome(lambda: open_through(entry, url, {}, {"sslmode": "disable"}, timeout=2.0))
    unheard(other)
    assert other.accepted == 0
    assert endpoint.accepted >= 1
    assert CANARY.encode() in endpoint.heard()  # local development: it is the endpoint
    assert isinstance(raised, errors.AuthenticationError | psycopg_pool.PoolTimeout), raised


@pytest.mark.parametrize("entry", ["connect", "engine", "pool", "async_connect"])
def test_pghostaddr_sends_no_password_elsewhere_from_a_socket_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_elsewhere: fakes.FakeServer, entry: str
) -> None:
    """psycopg resolves a host name or address into a hostaddr of its own; a socket
    directory it leaves to libpq, where only the given empty hostaddr cancels PGHOSTADDR.
    The directory has no server in it: the connection fails, and goes nowhere else."""
    monkeypatch.setenv("PGHOSTADDR", ELSEWHERE)
    cfg = Config(
        auth="password",
        engine="postgresql",
        host=str(tmp_path),
        port=pg_elsewhere.port,
        user="app",
        password=CANARY,
        dbname="app",
        connect_args={"sslmode": "disable"},
    )
    raised = outcome(lambda: open_through(entry, cfg, {}, {}, timeout=2.0))
    unheard(pg_elsewhere)
    assert pg_elsewhere.accepted == 0
    assert raised is not None
    assert not isinstance(raised, errors.ConfigError), raised  # a local one: allowed


@pytest.mark.parametrize("entry", ["connect", "engine", "pool", "async_connect"])
def test_pgservice_sends_no_password_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pg_elsewhere: fakes.FakeServer,
    entry: str,
) -> None:
    """A service's hostaddr fills what the URL leaves open: for a socket directory, the
    address. A set PGSERVICE is refused, naming it."""
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[evil]\nhostaddr={ELSEWHERE}\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.setenv("PGSERVICE", "evil")
    cfg = Config(
        auth="password",
        engine="postgresql",
        host=str(tmp_path),  # a socket directory with no server in it
        port=pg_elsewhere.port,
        user="app",
        password=CANARY,
        dbname="app",
        connect_args={"sslmode": "disable"},
    )
    raised = outcome(lambda: open_through(entry, cfg, {}, {}, timeout=2.0))
    unheard(pg_elsewhere)
    message = "PGSERVICE is set in the environment"
    refused(raised, message)


@pytest.mark.parametrize("entry", ["connect", "engine", "async_connect"])
def test_pgservicefile_alone_sends_nothing_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pg_pair: tuple[fakes.FakeServer, fakes.FakeServer],
    entry: str,
) -> None:
    """A service file whose services all point elsewhere, and no service named: harmless,
    before the fix and after."""
    endpoint, other = pg_pair
    services = tmp_path / "pg_service.conf"
    entry_text = f"host={ELSEWHERE}\nhostaddr={ELSEWHERE}\nport={other.port}\nsslmode=disable\n"
    names = ("app", "postgres", "localhost", "default", "evil")
    services.write_text("".join(f"[{name}]\n{entry_text}\n" for name in names))
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.delenv("PGSERVICE", raising=False)
    url = f"postgresql://app:{CANARY}@127.0.0.1:{endpoint.port}/app"
    raised = outcome(lambda: open_through(entry, url, {}, {"sslmode": "disable"}))
    unheard(other)
    assert other.accepted == 0
    assert CANARY.encode() in endpoint.heard()
    assert isinstance(raised, errors.AuthenticationError), raised


@pytest.mark.bed
def test_pgservice_cannot_make_libpq_log_tls_keys(
    bed: Any, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Verify-full to a remote name holds whatever a service adds, but a service can add
    ``sslkeylogfile``: libpq would write the session's keys for anyone to decrypt it."""
    keys = tmp_path / "tls-keys.log"
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[app]\nsslkeylogfile={keys}\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.setenv("PGSERVICE", "app")
    url = f"postgresql://iam_user@localhost:{bed.primary.port}/app"
    opts = {"auth": "iam", "ca_bundle": str(bed.pki.ca)}
    with contextlib.suppress(errors.ConfigError):
        open_through("connect", url, opts, {})
    assert not keys.exists(), f"libpq wrote the TLS keys: {keys.read_text()[:80]!r}"
    with pytest.raises(errors.ConfigError, match="PGSERVICE is set in the environment"):
        open_through("connect", url, opts, {})
