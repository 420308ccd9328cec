"""The public surface: exactly design.md's names, loaded lazily, nothing heavy on import."""

from __future__ import annotations

import json
import subprocess
import sys

import securedb
from securedb import errors

HEAVY = ("boto3", "botocore", "sqlalchemy", "psycopg", "psycopg_pool", "pymysql")


def test_all_is_the_public_names() -> None:
    assert sorted(securedb.__all__) == sorted(
        ["Config", "__version__", "connect", "engine", "errors", "pool", "run_transaction"]
    )
    for name in securedb.__all__:
        assert getattr(securedb, name) is not None


def test_import_loads_no_heavy_module() -> None:
    code = (
        f"import json, sys, securedb; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_config_parsing_loads_no_heavy_module() -> None:
    code = (
        "import json, sys, securedb; "
        "securedb.Config.from_url('postgresql://u@h/db', auth='iam'); securedb.errors; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_error_tree() -> None:
    assert set(errors.__all__) == {
        "SecureDBError",
        "ConfigError",
        "CredentialsError",
        "TLSError",
        "AuthenticationError",
        "FailoverError",
        "TransactionOutcomeUnknown",
    }
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SecureDBError)
        assert cls.__module__ == "securedb.errors"
    assert issubclass(errors.TransactionOutcomeUnknown, errors.FailoverError)


def test_typed_package() -> None:
    from importlib.resources import files

    assert files("securedb").joinpath("py.typed").is_file()
