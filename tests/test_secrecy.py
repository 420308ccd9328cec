"""No password, token or secret reaches a log record, repr, exception or traceback.

Every log record at DEBUG (securedb's, botocore's, the drivers') and every exception
string is captured while connecting with IAM and secrets on both engines, through a
forced refresh, and through failures; none may hold a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa

import securedb
from bed import mariadb, postgres
from bed.bed import Bed
from bed.moto import SECRET_ACCESS_KEY
from securedb import errors
from securedb.config import Config
from securedb.connector import Connector
from securedb.credentials.base import Credential
from securedb.credentials.cache import RefreshAheadCache

pytestmark = pytest.mark.bed

SECRET_PASSWORD = "s3cret-rotated-Pa55word"
MARKERS = (
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-Credential",
    "Action=connect",
    SECRET_ACCESS_KEY,
    postgres.APP_PASSWORD,
    SECRET_PASSWORD,
    "wrong-but-secret",
)


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.name}: {self.format(record)}")
        self.texts.append(repr(record.args))


@contextlib.contextmanager
def capture() -> Iterator[list[str]]:
    """Every log record of every logger at DEBUG, formatted, with its arguments."""
    handler = Everything()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.texts
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def attempt(texts: list[str], action: Callable[[], Any]) -> Any:
    """Run `action`; keep the repr of what it returns and every text of what it raises."""
    try:
        result = action()
    except Exception as exc:
        texts.extend([str(exc), repr(exc), *traceback.format_exception(exc)])
        return None
    texts.append(repr(result))
    return result


def test_nothing_secret_anywhere(bed: Bed, aws_env: dict[str, str]) -> None:
    ca = str(bed.pki.ca)
    pg, my = bed.primary.port, bed.mariadb.port
    sm = boto3.client("secretsmanager")
    sm.create_secret(
        Name="rds/leak",
        SecretString=json.dumps(
            {
                "username": postgres.APP_USER,
                "password": postgres.APP_PASSWORD,
                "engine": "postgres",
                "host": "localhost",
                "port": pg,
                "dbname": "app",
            }
        ),
    )
    sm.create_secret(
        Name="rds/stale",
        SecretString=json.dumps(
            {
                "username": postgres.APP_USER,
                "password": SECRET_PASSWORD,
                "engine": "mysql",
                "host": "127.0.0.1",
                "port": my,
                "dbname": "app",
            }
        ),
    )
    sm.create_secret(Name="rds/malformed", SecretString=f"user={SECRET_PASSWORD}")
    with capture() as captured:
        sm.list_secrets()  # botocore logs this at DEBUG from its child loggers
        texts = exercise(bed, ca, pg, my)
    everything = "\n".join(captured + texts)
    assert "botocore.hooks: " in everything  # the capture did capture
    assert "securedb.connect: " in everything
    assert mariadb.APP_USER in everything
    leaks = [marker for marker in MARKERS if marker in everything]
    assert leaks == []


def exercise(bed: Bed, ca: str, pg: int, my: int) -> list[str]:
    """Connect every way that works and fail every way that doesn't; collect the texts."""
    texts: list[str] = []

    # Success paths, with reprs of everything a user may print.
    for url in (
        f"postgresql://iam_user@localhost:{pg}/app",
        f"mysql://iam_user@127.0.0.1:{my}/app",
    ):
        conn = attempt(texts, lambda url=url: securedb.connect(url, auth="iam", ca_bundle=ca))
        conn.close()
        with Connector(Config.from_url(url, auth="iam", ca_bundle=ca)) as connector:
            texts += [
                repr(connector),
                repr(connector.cache),
                repr(connector.cache.get()),
                repr(connector.config),
            ]
    attempt(texts, lambda: securedb.connect(secret_id="rds/leak", ca_bundle=ca)).close()
    eng = attempt(texts, lambda: securedb.engine(secret_id="rds/leak", ca_bundle=ca))
    with eng.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    texts.append(repr(eng.url))
    eng.dispose()
    texts.append(repr(Config.from_url(f"postgresql://u:{SECRET_PASSWORD}@localhost/db")))

    # Failure paths: refused password (a forced refresh and retry), malformed and
    # missing secrets, a wrong password, an untrusted server.
    attempt(texts, lambda: securedb.connect(secret_id="rds/stale", ca_bundle=ca))
    attempt(texts, lambda: securedb.connect(secret_id="rds/malformed", ca_bundle=ca))
    attempt(texts, lambda: securedb.connect(secret_id="rds/missing", ca_bundle=ca))
    attempt(
        texts,
        lambda: securedb.connect(
            f"postgresql://app_user:wrong-but-secret@localhost:{pg}/app", ca_bundle=ca
        ),
    )
    attempt(
        texts,
        lambda: securedb.connect(
            f"mysql://iam_user@127.0.0.1:{my}/app", auth="iam", ca_bundle=str(bed.pki.untrusted_ca)
        ),
    )
    attempt(
        texts,
        lambda: securedb.connect(
            f"postgresql://app_user@localhost:{pg}/app", auth="iam", ca_bundle=ca
        ),
    )
    return texts


def reachable(exc: BaseException) -> list[str]:
    """Every text an error reporter could capture from `exc`.

    Its message and repr; its cause and context, suppressed or not; its attributes (a
    psycopg error's ``pgconn.info`` included); and the locals of every frame of its
    traceback outside this test module, containers walked, other objects by repr.
    """
    texts: list[str] = []
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen or isinstance(obj, bool | int | float):
            continue
        seen.add(id(obj))
        if isinstance(obj, str | bytes):
            texts.append(obj if isinstance(obj, str) else obj.decode("latin-1"))
        elif isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            stack += list(obj)
        elif isinstance(obj, BaseException):
            texts += [str(obj), repr(obj)]
            stack += [obj.__cause__, obj.__context__, *obj.args, getattr(obj, "__dict__", {})]
            stack += [getattr(obj, name, None) for name in ("pgconn", "original_exception")]
            tb = obj.__traceback__
            while tb is not None:
                if tb.tb_frame.f_code.co_filename != __file__:
                    stack.append(dict(tb.tb_frame.f_locals))
                tb = tb.tb_next
        else:
            texts.append(repr(obj))
            with contextlib.suppress(Exception):  # a property may raise (SQLAlchemy's)
                info = getattr(obj, "info", None)  # a psycopg PGconn: its connection options
                stack += [(o.keyword, o.val) for o in info or ()]
    return texts


@pytest.fixture
def signed_tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every IAM token securedb signs during the test."""
    from securedb.credentials import iam

    tokens: list[str] = []
    presign = iam.presign

    def recording(*args: Any) -> str:
        tokens.append(presign(*args))
        return tokens[-1]

    monkeypatch.setattr(iam, "presign", recording)
    return tokens


@pytest.mark.parametrize(
    ("entry", "engine"),
    [
        ("connect", "postgresql"),
        ("connect", "mysql"),
        ("engine", "postgresql"),
        ("engine", "mysql"),
        ("pool", "postgresql"),  # pool() is PostgreSQL's (psycopg_pool)
        ("async_connect", "asyncpg"),
        ("async_engine", "asyncpg"),
    ],
)
@pytest.mark.parametrize("failure", ["iam refused", "secret refused", "untrusted"])
def test_errors_lead_to_no_secret(
    bed: Bed,
    aws_env: dict[str, str],
    signed_tokens: list[str],
    engine: str,
    entry: str,
    failure: str,
) -> None:
    host, port = (
        ("127.0.0.1", bed.mariadb.port) if engine == "mysql" else ("localhost", bed.primary.port)
    )
    scheme = "postgresql+asyncpg" if engine == "asyncpg" else engine
    ca = str(bed.pki.untrusted_ca if failure == "untrusted" else bed.pki.ca)
    if failure == "secret refused":
        boto3.client("secretsmanager").create_secret(
            Name="rds/refused",
            SecretString=json.dumps({"username": postgres.APP_USER, "password": SECRET_PASSWORD}),
        )
        url, options = f"{scheme}://{host}:{port}/app", {"secret_id": "rds/refused"}
    else:
        # app_user has no IAM login, so its (valid) token is refused.
        user = postgres.APP_USER if failure == "iam refused" else postgres.IAM_USER
        url, options = f"{scheme}://{user}@{host}:{port}/app", {"auth": "iam"}
    options["ca_bundle"] = ca
    expected = errors.TLSError if failure == "untrusted" else errors.AuthenticationError

    def trigger() -> None:
        if entry == "connect":
            securedb.connect(url, **options)
        elif entry == "engine":
            eng = securedb.engine(url, **options)
            try:
                eng.connect()
            finally:
                eng.dispose()
        elif entry == "async_connect":
            asyncio.run(securedb.async_connect(url, **options))
        elif entry == "async_engine":
            asyncio.run(async_engine_connect(url, options))
        else:
            with securedb.pool(url, **options, min_size=1, open=False) as pool:
                pool.connection(timeout=3).__enter__()

    with pytest.raises(Exception) as caught:  # noqa: PT011  (each entry raises its own kind)
        trigger()
    if entry != "pool":  # psycopg_pool logs each failure and raises PoolTimeout
        assert isinstance(caught.value, expected)
    secrets = [*signed_tokens, SECRET_PASSWORD, SECRET_ACCESS_KEY]
    if failure != "secret refused":
        assert signed_tokens, "no token was signed: the test exercised nothing"
    texts = "\n".join(reachable(caught.value))
    assert [s for s in secrets if s in texts] == []


async def async_engine_connect(url: str, options: dict[str, Any]) -> None:
    eng = securedb.async_engine(url, **options)
    try:
        async with eng.connect():
            pass
    finally:
        await eng.dispose()


# A raw 0xff byte in the environment becomes a lone surrogate (surrogateescape): it cannot
# be encoded, and an encoding error holds the whole text it failed on.
UNDECODABLE = "\udcff"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEsecret-session-token"
BROKEN_CREDENTIALS = {
    "secret key in the environment": {
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY + UNDECODABLE,
    },
    "session token in the environment": {
        "AWS_SESSION_TOKEN": SESSION_TOKEN + UNDECODABLE,
    },
    # With AWS_PROFILE set, botocore's chain reads the keys (its environment provider first).
    "secret key from the credential chain": {
        "AWS_PROFILE": "app",
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY + UNDECODABLE,
    },
}


@pytest.mark.parametrize("entry", ["connect", "cache"])
@pytest.mark.parametrize("broken", sorted(BROKEN_CREDENTIALS))
def test_undecodable_aws_keys_lead_to_no_secret(
    bed: Bed,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    entry: str,
    broken: str,
) -> None:
    """A key that cannot be encoded is refused before signing, with a CredentialsError
    naming what to fix; nothing reachable from it holds a key or token. `cache` is the
    path of `securedb token` and `securedb check`: the credential cache itself."""
    (tmp_path / "config").write_text("[profile app]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setattr("securedb.credentials.aws._session", None)
    for name, value in BROKEN_CREDENTIALS[broken].items():
        monkeypatch.setenv(name, value)
    url = f"postgresql://iam_user@localhost:{bed.primary.port}/app"

    def trigger() -> None:
        if entry == "connect":
            securedb.connect(url, auth="iam", ca_bundle=str(bed.pki.ca))
        else:
            with Connector(Config.from_url(url, auth="iam")) as connector:
                connector.cache.get()

    with pytest.raises(Exception) as caught:  # noqa: PT011  (the class is asserted below)
        trigger()
    assert type(caught.value) is errors.CredentialsError
    assert "is not ASCII" in str(caught.value)
    texts = "\n".join(reachable(caught.value))
    assert [s for s in (SECRET_ACCESS_KEY, SESSION_TOKEN) if s in texts] == []


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("rds/malformed", f"user={SECRET_PASSWORD}"),  # its text in a JSONDecodeError
        ("rds/no-username", json.dumps({"password": SECRET_PASSWORD})),
    ],
)
def test_secret_errors_from_the_cache_lead_to_no_secret(
    bed: Bed, aws_env: dict[str, str], name: str, secret: str
) -> None:
    """The cache is the credential path's boundary: what a source raised leaves it with no
    cause, context or frame of the fetch (which held the secret's text)."""
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=secret)
    connector = Connector(Config.from_url("postgresql://localhost/app", secret_id=name))
    with connector, pytest.raises(errors.CredentialsError) as caught:
        connector.cache.get()
    texts = "\n".join(reachable(caught.value))
    assert SECRET_PASSWORD not in texts


class Broken:
    """A source with a bug: it raises an error of its own whose arguments hold a secret."""

    name = "broken source"

    def fetch(self, rejected: Credential | None = None) -> Credential:
        password = SECRET_PASSWORD
        raise LookupError(f"no {password}")


def test_a_source_error_of_another_class_leaves_as_a_credentials_error() -> None:
    cache = RefreshAheadCache(Broken(), "lazy")
    with pytest.raises(errors.CredentialsError) as caught:
        cache.get()
    assert str(caught.value).startswith("broken source not fetched: LookupError while fetching")
    assert SECRET_PASSWORD not in "\n".join(reachable(caught.value))
