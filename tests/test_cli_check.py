"""`securedb check` on the bed: every step on good endpoints of both engines, and the
step that fails for an untrusted CA, a closed port, a refused user and a bad name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bed import certs, mariadb, postgres, procs
from bed.bed import Bed
from securedb import cli
from tests import fakes
from tests.test_connect import make_secret

STEPS = ["config", "dns", "tcp", "tls", "credentials", "login", "query"]
LEAKS = ("X-Amz-Signature", "X-Amz-Credential", postgres.APP_PASSWORD, mariadb.APP_PASSWORD)


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run `securedb check --json`; the exit status, the report and stderr."""
    status = cli.main(["check", *args, "--json"])
    out, err = capsys.readouterr()
    assert not any(leak in out + err for leak in LEAKS)
    return status, json.loads(out), err


def failed_step(report: dict[str, Any]) -> dict[str, Any]:
    assert report["ok"] is False
    *passed, last = report["steps"]
    assert all(step["ok"] for step in passed)
    assert last["ok"] is False
    return last


def endpoint(bed: Bed, engine: str, user: str = "iam_user", port: int | None = None) -> str:
    if engine == "postgresql":
        return f"postgresql://{user}@localhost:{port or bed.primary.port}/app"
    return f"mysql://{user}@127.0.0.1:{port or bed.mariadb.port}/app"


@pytest.mark.bed
@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_check_passes_every_step_with_iam(
    bed: Bed, aws_env: dict[str, str], engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report, _ = check(
        capsys, endpoint(bed, engine), "--auth", "iam", "--ca-bundle", str(bed.pki.ca)
    )
    assert status == 0
    assert report["ok"] is True
    assert [s["step"] for s in report["steps"]] == STEPS
    for step in report["steps"]:
        assert set(step) == {"step", "ok", "ms", "detail"}
        assert step["ok"] is True
        assert isinstance(step["ms"], float)
        assert step["ms"] >= 0
    details = {s["step"]: s["detail"] for s in report["steps"]}
    assert "TLSv1." in details["tls"]
    assert "issued by 'securedb bed CA'" in details["tls"]
    assert "IAM token for iam_user@" in details["credentials"]
    assert "from the environment" in details["credentials"]
    assert details["login"] == "logged in as iam_user over verified TLS"
    product = "PostgreSQL 15" if engine == "postgresql" else "MariaDB"
    assert product in details["query"]
    assert "; writer; no proxy seen;" in details["query"]


@pytest.mark.bed
def test_check_says_a_standby_is_read_only(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = endpoint(bed, "postgresql", port=bed.replica.port)
    status, report, _ = check(capsys, url, "--auth", "iam", "--ca-bundle", str(bed.pki.ca))
    assert status == 0, report
    assert "; read-only (a standby or reader); no proxy seen;" in report["steps"][-1]["detail"]


@pytest.mark.bed
def test_check_through_a_tunnel_verifies_the_real_name(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    url = f"postgresql://iam_user@{certs.PG_INSTANCE}:5432/app"
    status, report, _ = check(
        capsys,
        url,
        "--auth",
        "iam",
        "--ca-bundle",
        str(bed.pki.ca),
        "--tunnel",
        f"127.0.0.1:{fwd.port}",
    )
    assert status == 0, report
    details = {s["step"]: s["detail"] for s in report["steps"]}
    assert f"tunnel 127.0.0.1:{fwd.port}" in details["config"]
    assert details["tcp"] == f"connected to 127.0.0.1:{fwd.port}"
    assert f"the certificate names {certs.PG_INSTANCE}" in details["tls"]
    assert f"IAM token for iam_user@{certs.PG_INSTANCE}:5432" in details["credentials"]
    assert f"the server listens on {bed.primary.port}, the endpoint is :5432" in details["query"]
    assert fwd.accepted >= 2  # the TLS probe, then the login


@pytest.mark.bed
def test_check_with_an_rds_managed_secret_alone(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    secret = make_secret(bed, "rds/mysql", "mysql")
    status, report, _ = check(capsys, "--secret-id", secret, "--ca-bundle", str(bed.pki.ca))
    assert status == 0, report
    details = {s["step"]: s["detail"] for s in report["steps"]}
    assert details["config"].startswith(f"mysql app_user@127.0.0.1:{bed.mariadb.port}/app")
    assert f"secret '{secret}' read for app_user" in details["credentials"]
    assert "rotation off" in details["credentials"]


@pytest.mark.bed
def test_check_names_a_pooler_in_between(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = endpoint(bed, "postgresql", port=bed.proxy_iam.port)
    status, report, _ = check(capsys, url, "--auth", "iam", "--ca-bundle", str(bed.pki.ca))
    assert status == 0, report
    query = report["steps"][-1]["detail"]
    assert (
        f"the server listens on {bed.primary.port}, the endpoint is :{bed.proxy_iam.port}" in query
    )


@pytest.mark.bed
@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_untrusted_ca_fails_the_tls_step(
    bed: Bed, aws_env: dict[str, str], engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report, _ = check(
        capsys, endpoint(bed, engine), "--auth", "iam", "--ca-bundle", str(bed.pki.untrusted_ca)
    )
    assert status == 1
    step = failed_step(report)
    assert step["step"] == "tls"
    assert f"not trusted by {bed.pki.untrusted_ca}" in step["detail"]
    assert "issued by 'securedb bed CA'" in step["detail"]  # what the server presents
    assert "likely causes: the wrong CA bundle" in step["detail"]
    assert "fix: pass --ca-bundle with AWS's global-bundle.pem" in step["detail"]


@pytest.mark.bed
@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_name_the_certificate_lacks_fails_the_tls_step(
    bed: Bed, aws_env: dict[str, str], engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = bed.primary.port if engine == "postgresql" else bed.mariadb.port
    status, report, _ = check(
        capsys,
        f"{engine}://iam_user@db.example.com/app",
        "--auth",
        "iam",
        "--ca-bundle",
        str(bed.pki.ca),
        "--tunnel",
        f"127.0.0.1:{port}",
    )
    assert status == 1
    step = failed_step(report)
    assert step["step"] == "tls"
    assert "the certificate does not name db.example.com" in step["detail"]
    real = certs.PG_INSTANCE if engine == "postgresql" else certs.MYSQL_INSTANCE
    assert real in step["detail"]  # the names it does carry
    assert "--tunnel" in step["detail"]


@pytest.mark.bed
@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_closed_port_fails_the_tcp_step(
    bed: Bed, aws_env: dict[str, str], engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = procs.free_port()
    status, report, _ = check(
        capsys, endpoint(bed, engine, port=port), "--auth", "iam", "--ca-bundle", str(bed.pki.ca)
    )
    assert status == 1
    step = failed_step(report)
    assert step["step"] == "tcp"
    assert f"connection to port {port} refused" in step["detail"]
    assert "nothing listens there" in step["detail"]


@pytest.mark.bed
@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_refused_user_fails_the_login_step(
    bed: Bed, aws_env: dict[str, str], engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """app_user has no IAM login: its token is refused, with the IAM causes and fix."""
    status, report, _ = check(
        capsys,
        endpoint(bed, engine, user="app_user"),
        "--auth",
        "iam",
        "--ca-bundle",
        str(bed.pki.ca),
    )
    assert status == 1
    step = failed_step(report)
    assert step["step"] == "login"
    assert "refused the IAM token" in step["detail"]
    assert "IAM authentication not enabled" in step["detail"]
    assert "rds-db:connect" in step["detail"]
    assert "clock skew" in step["detail"]


@pytest.mark.bed
def test_a_refused_password_through_a_pooler_fails_the_login_step(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://app_user:wrong-password@localhost:{bed.proxy_password.port}/app"
    status, report, _ = check(capsys, url, "--ca-bundle", str(bed.pki.ca))
    assert status == 1
    step = failed_step(report)
    assert step["step"] == "login"
    assert "authentication failed" in step["detail"]
    assert "fix: check the user and password" in step["detail"]


@pytest.mark.bed
def test_a_name_that_does_not_resolve_fails_the_dns_step(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, report, _ = check(
        capsys,
        "postgresql://iam_user@mydb.nowhere.invalid/app",
        "--auth",
        "iam",
        "--ca-bundle",
        str(bed.pki.ca),
    )
    assert status == 1
    step = failed_step(report)
    assert step["step"] == "dns"
    assert step["detail"].startswith("mydb.nowhere.invalid does not resolve")
    assert [s["step"] for s in report["steps"]] == ["config", "dns"]


def test_a_configuration_error_fails_the_config_step_with_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, report, err = check(capsys, "postgresql://app@db.example.com/app", "--auth", "token")
    assert status == 2
    assert [s["step"] for s in report["steps"]] == ["config"]
    assert "bad value for --auth: 'token'" in report["steps"][0]["detail"]
    assert err.startswith("securedb: bad value for --auth: 'token'")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("handler", "what"),
    [(fakes.pg_without_tls, "postgresql"), (fakes.mysql_without_tls, "mysql")],
)
def test_a_server_without_tls_fails_the_tls_step_and_gets_nothing(
    aws_env_free: None, handler: fakes.Handler, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with fakes.FakeServer(handler) as server:
        status, report, _ = check(
            capsys, f"{what}://iam_user@127.0.0.1:{server.port}/app", "--auth", "iam"
        )
    assert status == 1
    step = failed_step(report)
    assert step["step"] == "tls"
    assert step["detail"].startswith("no TLS")
    assert b"iam_user" not in server.received
    assert b"X-Amz" not in server.received


@pytest.fixture
def aws_env_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS anything: the TLS step must fail before a credential is even signed."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def test_human_output_names_the_failed_step_with_causes_and_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["check", "postgresql://app@db.nowhere.invalid/app", "--auth", "iam"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok    config")
    assert lines[1].startswith("FAIL  dns")
    assert lines[2] == "      likely causes:"
    assert lines[3].startswith("        - a typo in the endpoint name")
    assert any(line.startswith("      fix: ") for line in lines)
    assert lines[-1] == "check failed at step dns"


def test_a_configuration_error_is_one_line_on_stderr_and_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["check", "https://x"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("securedb: unsupported URL scheme 'https'; use one of ")
    assert err.count("\n") == 1
    assert err.count("unsupported URL scheme") == 1
