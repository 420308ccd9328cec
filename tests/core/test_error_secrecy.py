"""What leaves securedb when a driver or AWS fails: exact messages, no secret, no trail.

Pure tests of the translation functions (`securedb._translate` and its helpers) and of
the quiet filter on botocore's loggers; the bed tests (test_secrecy.py) show the same
on real servers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pymysql
import pytest

from securedb import errors, tls
from securedb._translate import _clean, _server_words, _tls_message, detached, translate
from securedb.config import Config
from securedb.credentials import aws
from securedb.credentials.base import Credential
from securedb.drivers import Failure

SECRET = "pw-Secret-0042"
RDS = "mydb.abc123.eu-west-2.rds.amazonaws.com"
IAM = Config.from_url(f"postgresql://app@{RDS}/app", auth="iam")
SECRET_CFG = Config.from_url(f"mysql://app@{RDS}/app", secret_id="rds/app")
PASSWORD = Config.from_url("postgresql://app:pw@localhost:5433/app")


def raised(exc: BaseException) -> BaseException:
    """`exc` as raised inside a function that held the secret, with a cause and context."""
    try:
        try:
            raise RuntimeError(f"inner {SECRET}")
        except RuntimeError as inner:
            raise exc from inner
    except BaseException as outer:
        return outer


def test_securedb_errors_leave_without_traceback_cause_or_context() -> None:
    original = raised(errors.CredentialsError("secret 'x' not read", host="h", port=1))
    assert original.__traceback__ is not None
    assert original.__cause__ is not None
    assert original.__context__ is not None
    clean = translate(original, None, IAM, SECRET)  # type: ignore[arg-type]
    assert clean is original
    assert (clean.__traceback__, clean.__cause__, clean.__context__) == (None, None, None)
    again = detached(raised(errors.TLSError("t")))  # type: ignore[arg-type]
    assert (again.__traceback__, again.__cause__, again.__context__) == (None, None, None)


@pytest.mark.parametrize(
    ("cfg", "words", "hint"),
    [
        (
            IAM,
            "refused the IAM token even after fetching it again",
            "check that IAM authentication is enabled on the instance, that the database "
            "user has the rds_iam role (PostgreSQL) or the AWSAuthenticationPlugin (MySQL), "
            "and that the caller's policy allows rds-db:connect for this user",
        ),
        (
            SECRET_CFG,
            "refused the secret's password even after fetching it again",
            "check that the secret's username and password match the database (a rotation "
            "may have failed)",
        ),
        (PASSWORD, "refused the password", "check the user and password"),
    ],
)
def test_refused_credentials_become_authentication_error(
    cfg: Config, words: str, hint: str
) -> None:
    exc = raised(RuntimeError(f'FATAL:  password authentication failed for "{SECRET}"'))
    out = translate(exc, Failure.AUTH, cfg, SECRET)  # type: ignore[arg-type]
    assert type(out) is errors.AuthenticationError
    assert str(out) == (
        f"{cfg.endpoint} {words} (the server said: password authentication failed for "
        f'"***"); {hint}'
    )
    assert (out.host, out.port) == (cfg.host, cfg.port)
    assert (out.__cause__, out.__context__, out.__traceback__) == (None, None, None)


def test_tls_failures_become_tls_error_with_the_cause_words() -> None:
    exc = pymysql.err.OperationalError(2003, "Can't connect")
    exc.__cause__ = OSError("certificate verify failed: self-signed certificate")
    out = translate(exc, Failure.TLS, IAM, SECRET)
    assert type(out) is errors.TLSError
    assert str(out) == _tls_message("certificate verify failed", IAM)  # words of the cause
    assert (out.host, out.port) == (RDS, 5432)
    plain = translate(RuntimeError("SSL error: tlsv1 alert"), Failure.TLS, IAM, SECRET)
    assert str(plain) == _tls_message("handshake", IAM)


@pytest.mark.parametrize("failure", [Failure.FAILOVER, Failure.READ_ONLY, None])
def test_other_driver_errors_are_fresh_copies_with_the_secret_cleaned(
    failure: Failure | None,
) -> None:
    exc = raised(pymysql.err.OperationalError(2013, f"lost connection; password={SECRET}"))
    exc.extra = SECRET  # type: ignore[attr-defined]
    out = translate(exc, failure, IAM, SECRET)  # type: ignore[arg-type]
    assert type(out) is pymysql.err.OperationalError
    assert out is not exc
    assert out.args == (2013, "lost connection; password=***")
    assert (out.__cause__, out.__context__, out.__traceback__) == (None, None, None)
    assert not hasattr(out, "extra")


def test_server_words() -> None:
    assert _server_words(pymysql.err.OperationalError(1045, f"denied {SECRET}"), SECRET) == (
        "denied ***"
    )
    assert _server_words(RuntimeError(1045), SECRET) == "1045"
    assert _server_words(RuntimeError("a", "b"), SECRET) == "('a', 'b')"
    assert _server_words(RuntimeError("FATAL: one FATAL:  two "), SECRET) == "two"
    assert _server_words(RuntimeError("x" * 400), SECRET) == "x" * 300
    assert _server_words(RuntimeError(f"{SECRET}{SECRET}"), SECRET) == "******"


def test_clean() -> None:
    assert _clean(f"a {SECRET} b {SECRET}", SECRET) == "a *** b ***"
    assert _clean("nothing here", SECRET) == "nothing here"
    assert _clean("keep all", "") == "keep all"


def test_tls_messages_exactly() -> None:
    where = f"{RDS}:5432"
    assert _tls_message("hostname mismatch", IAM) == (
        f"the certificate of {where} does not name {RDS}; connect with the RDS endpoint "
        "name (a CNAME of your own is not in the certificate), or use tunnel= for a port "
        "forward"
    )
    assert _tls_message("does not match host name", PASSWORD) == (
        "the certificate of localhost:5433 does not name localhost: the server's "
        "certificate names the real endpoint, so connect to that name and send the socket "
        "to the local forward with tunnel='127.0.0.1:PORT'"
    )
    trust = (
        f"the certificate of {where} is not trusted by {tls.ca_file(IAM)}; for RDS the "
        "bundled RDS CA should chain, unless the endpoint's region is newer than the "
        "bundled snapshot: then pass ca_bundle= with AWS's current global-bundle.pem, or "
        "run `securedb ca refresh` and pass ca_bundle= with the rds-ca-bundle.pem it writes; "
        "for a server of your own, pass ca_bundle= with its CA"
    )
    assert _tls_message("certificate verify failed", IAM) == trust
    assert _tls_message("bad certificate", IAM) == trust
    assert _tls_message("verify failed", IAM) == trust
    assert _tls_message("unexpected eof", IAM) == (
        f"TLS to {where} failed: the server did not complete a verified TLS handshake "
        "(does it offer TLS?); securedb never connects without verified TLS"
    )


# --- the quiet filter on botocore's loggers --------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    for name in aws.SECRET_BEARING_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for name in aws.SECRET_BEARING_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def test_quiet_drops_botocore_records_in_this_thread_only(records: Records) -> None:
    log = logging.getLogger("botocore.auth")
    log.debug("before")
    with aws.quiet():
        log.debug(f"signed {SECRET}")
        logging.getLogger("botocore.credentials").debug(f"keys {SECRET}")
        other = threading.Thread(target=lambda: log.debug("other thread"))
        other.start()
        other.join()
        with aws.quiet():
            log.debug(f"nested {SECRET}")
        log.debug(f"still quiet {SECRET}")
    log.debug("after")
    assert records.messages == ["before", "other thread", "after"]


def test_quiet_is_restored_when_the_block_raises(records: Records) -> None:
    with pytest.raises(LookupError), aws.quiet():
        raise LookupError
    logging.getLogger("botocore.endpoint").debug("heard")
    assert records.messages == ["heard"]


def test_credential_repr_masks_the_password() -> None:
    cred = Credential("app", SECRET, version="v1")
    assert repr(cred) == "Credential(user='app', password=***, version='v1')"
    assert SECRET not in str(cred)
