"""The securedb exception hierarchy.

Everything securedb raises is one of these::

    SecureDBError
    ├── ConfigError            bad URL or option, ambiguous auth, TLS weakened for a remote host
    ├── CredentialsError       no AWS credentials, secret missing / denied / malformed,
    │                          token signing failed
    ├── TLSError               untrusted certificate, host-name mismatch, server without TLS
    ├── AuthenticationError    the database refused credentials even after a refresh and retry
    ├── TopologyError          an Aurora topology answer securedb cannot trust
    ├── NoReaderError          no healthy Aurora reader (and reader_fallback is off)
    ├── ClosedError            a connector used after close()
    └── FailoverError          retries exhausted
        └── TransactionOutcomeUnknown    the connection died during COMMIT

Each message says what failed, for which ``user@host:port``, and what to do next. No
message, attribute or chained cause ever holds a password, token or secret value:
where a lower-level error could, it is cut with ``from None``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClosedError",
    "ConfigError",
    "CredentialsError",
    "FailoverError",
    "NoReaderError",
    "SecureDBError",
    "TLSError",
    "TopologyError",
    "TransactionOutcomeUnknown",
]


class SecureDBError(Exception):
    """Base class of every securedb error.

    Attributes:
        host: the database endpoint the error concerns, when there is one.
        port: its port.
    """

    def __init__(self, message: str, *, host: str | None = None, port: int | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


class ConfigError(SecureDBError, ValueError):
    """A URL, option or environment variable is invalid, or weakens TLS for a remote host."""


class CredentialsError(SecureDBError):
    """Credentials could not be obtained: AWS credentials, a secret, or a token signature."""


class TLSError(SecureDBError):
    """The server's certificate could not be verified, or the server does not offer TLS."""


class AuthenticationError(SecureDBError):
    """The database refused the credentials, even after one refresh and retry."""


class TopologyError(SecureDBError):
    """An Aurora topology answer is not one to trust: no writer, two writers, or an
    instance name that is not an instance of the cluster. Nothing is sent to it."""


class NoReaderError(SecureDBError):
    """No Aurora reader is healthy (each is lagging or unreachable), and
    ``reader_fallback`` does not allow the writer."""


class ClosedError(SecureDBError):
    """A connector was used after `close()`: closing is final, as for a file or an HTTP
    client. Make a new one (an engine's own connector is made again after `dispose()`)."""


class FailoverError(SecureDBError):
    """Retries after failover-class errors ran out; the last error is chained."""


class TransactionOutcomeUnknown(FailoverError):
    """The connection was lost during COMMIT: the transaction may or may not have committed."""


for _cls in (
    SecureDBError,
    ConfigError,
    CredentialsError,
    TLSError,
    AuthenticationError,
    TopologyError,
    NoReaderError,
    ClosedError,
    FailoverError,
    TransactionOutcomeUnknown,
):
    _cls.__module__ = "securedb.errors"
