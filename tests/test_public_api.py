"""The public surface: exactly design.md's names, loaded lazily, nothing heavy on import."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys

import pytest

import securedb
from securedb import errors

HEAVY = ("boto3", "botocore", "sqlalchemy", "psycopg", "psycopg_pool", "pymysql")


# design.md's public API: each function, and whether it is awaited.
FUNCTIONS = {
    "connect": False,
    "engine": False,
    "async_engine": False,
    "pool": False,
    "async_pool": False,
    "async_connect": True,
    "run_transaction": False,
    "run_transaction_async": True,
}
# What each name is, resolved in a fresh interpreter: there no submodule was imported
# before (an import would set the package's attribute and hide its lazy lookup), and
# `errors` is looked up first, before another name's module imports it.
RESOLVE = """
import inspect, json, securedb
names = sorted(securedb.__all__, key=lambda name: name != "errors")
found = {}
for name in names:
    value = getattr(securedb, name)
    if inspect.ismodule(value):
        found[name] = ["module", value.__name__]
    elif isinstance(value, str):
        found[name] = ["str", value]
    else:
        found[name] = [value.__module__, value.__qualname__, inspect.iscoroutinefunction(value)]
print(json.dumps(found))
"""


def test_all_is_the_public_names() -> None:
    assert sorted(securedb.__all__) == sorted(["Config", "__version__", "errors", *FUNCTIONS])
    assert dir(securedb) == sorted(securedb.__all__)
    resolved = subprocess.run(
        [sys.executable, "-c", RESOLVE], capture_output=True, text=True, check=True
    )
    found = json.loads(resolved.stdout)
    assert found.pop("errors") == ["module", "securedb.errors"]
    kind, version = found.pop("__version__")
    assert kind == "str"
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|(a|b|rc)\d+)?", version)  # PEP 440
    assert found.pop("Config") == ["securedb.config", "Config", False]
    for name, (module, qualname, awaited) in found.items():
        assert (qualname, awaited) == (name, FUNCTIONS[name])
        assert module.startswith("securedb.")
        assert getattr(securedb, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'Connector'"):
        securedb.Connector  # noqa: B018


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
        "TopologyError",
        "NoReaderError",
        "AuthenticationError",
        "ClosedError",
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


@pytest.mark.parametrize("command", [["-m", "securedb"], ["-m", "securedb.cli"]])
def test_the_command_tells_its_version(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *command, "--version"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"securedb {securedb.__version__}\n",
        "",
    )


LOG_A_RETRY_WARNING = """
import logging, sys
from securedb.credentials import cache
if sys.argv[1] == "configured":
    logging.basicConfig(stream=sys.stdout, format="%(name)s %(message)s")
cache.logger.warning("refreshing x failed")
"""


def test_records_go_to_the_application_not_to_stderr() -> None:
    """A library leaves the choice to the application: nothing on stderr by Python's
    last-resort handler, and every record to the handlers the application configures."""
    for how, out in (
        ("unconfigured", ""),
        ("configured", "securedb.credentials refreshing x failed\n"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", LOG_A_RETRY_WARNING, how],
            capture_output=True,
            text=True,
            check=True,
        )
        assert (done.stdout, done.stderr) == (out, "")
