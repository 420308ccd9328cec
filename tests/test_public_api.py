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


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules loaded in a fresh interpreter after running `code`."""
    probe = (
        f"import json, sys; {code}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def test_import_loads_no_heavy_module() -> None:
    assert heavy_modules_after("import securedb") == []


def test_config_parsing_loads_no_heavy_module() -> None:
    code = (
        "import securedb; securedb.Config.from_url('postgresql://u@h/db', auth='iam'); "
        "securedb.errors"
    )
    assert heavy_modules_after(code) == []


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
