"""The botocore boundary: one session, quiet logging, and errors translated in one place.

botocore logs what securedb must never log: at DEBUG, signing writes the canonical
request and signature, and responses are logged whole (a secret's ``SecretString``
included); resolving credentials logs STS's keys, the web identity token it sends, and
the bodies a container or instance metadata endpoint returns. A filter on those loggers
drops their records while securedb resolves credentials, signs or fetches, in that
thread only. (A filter on the parent ``botocore`` logger would not see its children's
records.)

A forked child drops the parent's session (and with it the parent's credentials and
HTTP connection pools) and makes its own on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from securedb import _state
from securedb.errors import CredentialsError

if TYPE_CHECKING:
    import botocore.session

__all__ = ["quiet", "region_or_default", "session", "translate"]

SECRET_BEARING_LOGGERS = (
    # signing and API calls: canonical requests, request and response bodies
    "botocore.auth",
    "botocore.awsrequest",
    "botocore.endpoint",
    "botocore.handlers",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.regions",
    "botocore.retryhandler",
    # the credential chain: container and instance metadata responses, STS errors
    "botocore.credentials",
    "botocore.utils",
    # URLs (a container credentials path, a presigned query)
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.util.retry",
)
_quiet = threading.local()
_session: botocore.session.Session | None = None
_session_lock = threading.Lock()


class _QuietFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


_FILTER = _QuietFilter()
for _name in SECRET_BEARING_LOGGERS:
    logging.getLogger(_name).addFilter(_FILTER)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Drop botocore's log records in this thread while signing or fetching."""
    previous = getattr(_quiet, "on", False)
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = previous


def session() -> botocore.session.Session:
    """One botocore session per process: the whole credential chain, no service model."""
    global _session
    if _session is None:
        import botocore.session

        with _session_lock:
            if _session is None:
                with quiet():
                    _session = botocore.session.get_session()
    return _session


def _after_fork_in_child() -> None:
    """The parent's session and its lock are not the child's: a new one on first use."""
    global _session, _session_lock
    _session, _session_lock = None, threading.Lock()


_state.on_fork(_after_fork_in_child)


def region_or_default(region: str | None, what: str) -> str:
    """`region`, else AWS_REGION / AWS_DEFAULT_REGION, else the AWS config's region.

    botocore itself reads only AWS_DEFAULT_REGION; Lambda and the AWS SDKs set AWS_REGION.

    Raises:
        CredentialsError: no region anywhere, or the AWS config could not be read (a
            profile that does not exist: its name and the variable that names it).
    """
    env = os.environ
    found = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not found:
        error: CredentialsError | None = None
        try:
            with quiet():
                found = session().get_config_variable("region")
        except Exception as exc:  # a profile that does not exist, a config file that does not parse
            error = translate(exc, f"no AWS region for {what}")
        if error is not None:
            raise error  # outside the except block: botocore's error is not its context
    if not found:
        raise CredentialsError(
            f"no AWS region for {what}: pass region=, set AWS_REGION, "
            "or use an endpoint name like *.us-east-1.rds.amazonaws.com"
        )
    return str(found)


def translate(exc: Exception, what: str) -> CredentialsError:
    """Map a botocore failure to a CredentialsError that says what to do."""
    import botocore.exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return CredentialsError(
            f"{what}: no AWS credentials found; set AWS_PROFILE or the "
            "AWS_ACCESS_KEY_ID pair, or attach an IAM role"
        )
    if isinstance(exc, bx.ProfileNotFound):
        return _profile_not_found(str(exc.kwargs.get("profile", "")), what)
    if isinstance(exc, bx.CredentialRetrievalError):
        return CredentialsError(
            f"{what}: no AWS credentials from {exc.kwargs.get('provider', 'a provider')}; check "
            "the role and that its credentials endpoint answers"
        )
    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code", "unknown")
        hint = {
            "ResourceNotFoundException": "check the secret's name or ARN and the region",
            "AccessDeniedException": "grant secretsmanager:GetSecretValue (and kms:Decrypt)",
            "DecryptionFailure": "grant kms:Decrypt on the secret's KMS key",
            "ExpiredTokenException": "refresh the AWS session credentials",
            "UnrecognizedClientException": "check the AWS credentials",
            "InvalidSignatureException": "check the AWS secret access key and the clock",
        }.get(code, "see the AWS error code")
        return CredentialsError(f"{what}: AWS said {code}; {hint}")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
        return CredentialsError(
            f"{what}: cannot reach the AWS endpoint; check the network "
            "route or VPC endpoint, and AWS_ENDPOINT_URL if set"
        )
    return CredentialsError(
        f"{what}: {type(exc).__name__} from the AWS SDK (its details are withheld: they may "
        "hold a secret); check the AWS config and credentials files and AWS_* variables"
    )


# botocore reads the older name first: with both set, AWS_DEFAULT_PROFILE wins.
PROFILE_VARIABLES = ("AWS_DEFAULT_PROFILE", "AWS_PROFILE")


def _profile_not_found(profile: str, what: str) -> CredentialsError:
    """The profile botocore was told to use is in neither file: which files, which variable."""
    env = os.environ
    files = (
        f"{env.get('AWS_CONFIG_FILE') or '~/.aws/config'} or "
        f"{env.get('AWS_SHARED_CREDENTIALS_FILE') or '~/.aws/credentials'}"
    )
    where = f"{what}: AWS profile {profile!r} is not in {files}"
    named_by = [name for name in PROFILE_VARIABLES if env.get(name) == profile]
    if not named_by:
        return CredentialsError(f"{where}; name a profile that exists")
    variable = named_by[0]
    if variable == "AWS_DEFAULT_PROFILE" and env.get("AWS_PROFILE"):
        where += " (AWS_DEFAULT_PROFILE, which botocore reads before AWS_PROFILE)"
    else:
        where += f" ({variable})"
    return CredentialsError(f"{where}; set {variable} to one that exists, or unset it")
