"""A driver's failure as the error securedb raises: a securedb error saying what to do, or
the driver's own error made again from its cleaned words, holding nothing that leads to a
secret (no traceback, cause or context from inside securedb)."""

from __future__ import annotations

from typing import TypeVar

from securedb import tls
from securedb._values import is_loopback
from securedb.config import Config
from securedb.drivers import Failure
from securedb.errors import AuthenticationError, SecureDBError, TLSError

__all__ = ["detached", "translate"]

E = TypeVar("E", bound=BaseException)


def translate(exc: Exception, failure: Failure | None, cfg: Config, secret: str) -> Exception:
    """The error to raise for a driver failure, holding nothing that leads to `secret`.

    securedb's own errors lose their traceback (its frames hold the driver's arguments);
    others become a securedb error, or a fresh copy of the driver's error made of its
    cleaned message alone (no ``pgconn``, no cause), so SQLAlchemy and psycopg_pool still
    recognise a lost connection.
    """
    if isinstance(exc, SecureDBError):
        return detached(exc)
    words = _server_words(exc, secret)
    if failure is Failure.AUTH:
        return AuthenticationError(
            f"{cfg.endpoint} refused the {_AUTH_WORDS[cfg.auth]}"
            + (" even after fetching it again" if cfg.auth != "password" else "")
            + f" (the server said: {words}); {_AUTH_HINTS[cfg.auth]}",
            host=cfg.host,
            port=cfg.port,
        )
    if failure is Failure.TLS:
        # aiomysql keeps the ssl error's words in the cause only.
        reason = f"{exc} {exc.__cause__ or ''}"
        return TLSError(_tls_message(reason, cfg), host=cfg.host, port=cfg.port)
    args = tuple(_clean(a, secret) if isinstance(a, str) else a for a in exc.args)
    return type(exc)(*args)


def detached(exc: E) -> E:
    """`exc` without the traceback, cause and context it had inside securedb: its frames
    hold the driver's arguments, and a plan's frames hold connections."""
    exc.__cause__ = exc.__context__ = None
    return exc.with_traceback(None)


def _server_words(exc: Exception, secret: str) -> str:
    """What the server said (``PAM authentication failed for user "app"``), cleaned."""
    args = exc.args
    text = str(args[1]) if len(args) > 1 and isinstance(args[0], int) else str(exc)
    return _clean(text.rsplit("FATAL:", 1)[-1].strip(), secret)[:300]


def _clean(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


_AUTH_WORDS = {"iam": "IAM token", "secret": "secret's password", "password": "password"}
_AUTH_HINTS = {
    "iam": "check that IAM authentication is enabled on the instance, that the database user "
    "has the rds_iam role (PostgreSQL) or the AWSAuthenticationPlugin (MySQL), and that "
    "the caller's policy allows rds-db:connect for this user",
    "secret": "check that the secret's username and password match the database (a rotation "
    "may have failed)",
    "password": "check the user and password",
}


def _tls_message(reason: str, cfg: Config) -> str:
    where = f"{cfg.host}:{cfg.port}"
    if "match" in reason:  # "does not match", "hostname mismatch"
        if is_loopback(cfg.host):
            return (
                f"the certificate of {where} does not name {cfg.host}: the server's "
                "certificate names the real endpoint, so connect to that name and send "
                "the socket to the local forward with tunnel='127.0.0.1:PORT'"
            )
        return (
            f"the certificate of {where} does not name {cfg.host}; connect with the RDS "
            "endpoint name (a CNAME of your own is not in the certificate), or use "
            "tunnel= for a port forward"
        )
    if "verify failed" in reason or "certificate" in reason:
        return (
            f"the certificate of {where} is not trusted by {tls.ca_file(cfg)}; for RDS the "
            "bundled RDS CA should chain, unless the endpoint's region is newer than the "
            "bundled snapshot: then pass ca_bundle= with AWS's current global-bundle.pem, "
            "or run `securedb ca refresh` and pass ca_bundle= with the rds-ca-bundle.pem it "
            "writes; for a server of your own, pass ca_bundle= with its CA"
        )
    return (
        f"TLS to {where} failed: the server did not complete a verified TLS handshake "
        "(does it offer TLS?); securedb never connects without verified TLS"
    )
