"""A missing extra is one ImportError that names the function called and the extra to install.

Nothing is uninstalled: each case runs in a fresh interpreter where a finder placed first
on ``sys.meta_path`` answers for the blocked packages as if they were not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PG = "postgresql://app:not-a-secret-9f2@127.0.0.1:1/app"
MY = "mysql://app:not-a-secret-9f2@127.0.0.1:1/app"

# The blocked packages (and their submodules) raise as a package that is not installed does.
BLOCK = """
import importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

BLOCKED = set(sys.argv[1].split(","))
sys.meta_path.insert(0, Absent())
"""
# What was raised, as JSON on stdout; then raised again, uncaught, for its traceback.
CALL = """
import asyncio, json, securedb

def call():
    result = {CALL}
    if asyncio.iscoroutine(result):
        asyncio.run(result)

try:
    call()
except BaseException as exc:
    print(json.dumps({{
        "type": [c.__name__ for c in type(exc).__mro__],
        "message": str(exc),
        "cause": repr(exc.__cause__),
        "context": repr(exc.__context__),
    }}))
    raise
"""


def run(call: str, blocked: str) -> tuple[dict[str, object], str]:
    code = BLOCK + CALL.format(CALL=call)
    done = subprocess.run(
        [sys.executable, "-c", code, blocked], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stderr
    return json.loads(done.stdout), done.stderr


CASES = [
    (
        f"securedb.engine({PG!r})",
        "sqlalchemy",
        "securedb.engine() needs SQLAlchemy: pip install 'securedb[sqlalchemy]'",
    ),
    (
        f"securedb.engine({PG!r})",
        "psycopg",
        "securedb.engine() needs psycopg: pip install 'securedb[postgresql]'",
    ),
    (
        f"securedb.engine({MY!r})",
        "pymysql",
        "securedb.engine() needs PyMySQL: pip install 'securedb[mysql]'",
    ),
    (  # the base install: botocore only
        f"securedb.engine({MY!r})",
        "sqlalchemy,greenlet,psycopg,psycopg_pool,pymysql,aiomysql",
        "securedb.engine() needs SQLAlchemy and PyMySQL: pip install 'securedb[sqlalchemy,mysql]'",
    ),
    (
        f"securedb.connect({PG!r})",
        "psycopg",
        "securedb.connect() needs psycopg: pip install 'securedb[postgresql]'",
    ),
    (
        f"securedb.connect({MY!r})",
        "pymysql",
        "securedb.connect() needs PyMySQL: pip install 'securedb[mysql]'",
    ),
    (
        f"securedb.async_engine({PG!r})",
        "greenlet",
        "securedb.async_engine() needs greenlet: pip install 'securedb[async]'",
    ),
    (
        f"securedb.async_engine({MY!r})",
        "sqlalchemy,greenlet,psycopg,psycopg_pool,pymysql,aiomysql",
        "securedb.async_engine() needs SQLAlchemy, greenlet, PyMySQL and aiomysql: "
        "pip install 'securedb[sqlalchemy,async,mysql]'",
    ),
    (
        f"securedb.async_connect({MY!r})",
        "aiomysql",
        "securedb.async_connect() needs aiomysql: pip install 'securedb[async]'",
    ),
    (  # aiomysql is there, but not PyMySQL, which it imports
        f"securedb.async_connect({MY!r})",
        "pymysql",
        "securedb.async_connect() needs PyMySQL: pip install 'securedb[mysql]'",
    ),
    (  # the base install
        f"securedb.async_connect({MY!r})",
        "sqlalchemy,greenlet,psycopg,psycopg_pool,pymysql,aiomysql",
        "securedb.async_connect() needs PyMySQL and aiomysql: pip install 'securedb[mysql,async]'",
    ),
    (
        f"securedb.async_connect({PG!r})",
        "psycopg",
        "securedb.async_connect() needs psycopg: pip install 'securedb[postgresql]'",
    ),
    (
        f"securedb.pool({PG!r}, open=False)",
        "psycopg_pool",
        "securedb.pool() needs psycopg_pool: pip install 'securedb[postgresql]'",
    ),
    (
        f"securedb.async_pool({PG!r})",
        "psycopg,psycopg_pool",
        "securedb.async_pool() needs psycopg and psycopg_pool: pip install 'securedb[postgresql]'",
    ),
]


@pytest.mark.parametrize(
    ("call", "blocked", "message"),
    CASES,
    ids=[f"{call.partition('(')[0]}-{blocked}" for call, blocked, _ in CASES],
)
def test_one_import_error_naming_the_extra(call: str, blocked: str, message: str) -> None:
    raised, stderr = run(call, blocked)
    assert raised == {
        "type": ["ModuleNotFoundError", "ImportError", "Exception", "BaseException", "object"],
        "message": message,
        "cause": "None",
        "context": "None",
    }
    assert stderr.count("Traceback (most recent call last)") == 1, stderr
    assert stderr.endswith(f"\nModuleNotFoundError: {message}\n"), stderr


def test_a_module_set_to_none() -> None:
    """``sys.modules[name] = None``, the other way to hide a package, reads the same."""
    code = f"import sys; sys.modules['sqlalchemy'] = None; import securedb; securedb.engine({PG!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stderr.count("Traceback (most recent call last)") == 1, done.stderr
    assert done.stderr.endswith(
        "\nModuleNotFoundError: securedb.engine() needs SQLAlchemy: "
        "pip install 'securedb[sqlalchemy]'\n"
    )


def test_a_broken_install_is_not_called_a_missing_extra() -> None:
    """An installed package whose own dependency is missing says so, in its own words."""
    raised, stderr = run(f"securedb.engine({PG!r})", "typing_extensions")
    assert raised["message"] == "No module named 'typing_extensions'"
    assert "pip install" not in stderr


CLASSIFY = """
from securedb.drivers import mysql, postgres
error = ModuleNotFoundError("No module named 'x'", name="x")
print(postgres.classify(error), mysql.classify(error), postgres.classify(OSError()))
"""


def test_classify_without_the_driver_is_none() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK + CLASSIFY, "psycopg,pymysql"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "None None None\n"
