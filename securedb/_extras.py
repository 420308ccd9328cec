"""Optional dependencies: a missing one is one ImportError naming the extra that installs it.

The base install brings botocore only; the drivers, SQLAlchemy and greenlet come with
extras (see ``pyproject.toml``). Each entry point checks what it needs before it starts,
so a missing package is reported once, in the words of the function called, with the
command that adds it: ``securedb.engine() needs SQLAlchemy: pip install
'securedb[sqlalchemy]'``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable

__all__ = ["driver_modules", "missing", "require"]

# module -> (the name its users know it by, the securedb extra that installs it)
EXTRAS = {
    "sqlalchemy": ("SQLAlchemy", "sqlalchemy"),
    "greenlet": ("greenlet", "async"),  # SQLAlchemy's asyncio runs on it
    "psycopg": ("psycopg", "postgresql"),
    "psycopg_pool": ("psycopg_pool", "postgresql"),
    "pymysql": ("PyMySQL", "mysql"),
    "aiomysql": ("aiomysql", "async"),
    "asyncpg": ("asyncpg", "asyncpg"),
}
# What a sync connection imports; an async one, the adapter's ASYNC_IMPORTS.
SYNC_IMPORTS = {"postgresql": ("psycopg",), "mysql": ("pymysql",)}


def driver_modules(
    engine: str | None, is_async: bool, driver: str | None = None
) -> tuple[str, ...]:
    """The driver modules a connection to `engine` imports: none while it is unknown."""
    if not engine:
        return ()
    if is_async:
        from securedb import drivers

        return drivers.load(engine, driver).ASYNC_IMPORTS
    return SYNC_IMPORTS[engine]


def missing(function: str, modules: Iterable[str]) -> ModuleNotFoundError | None:
    """Import `modules`; the error to raise for those that are not installed, else None.

    The error names `function` (``"securedb.engine()"``), every missing package and the
    extras that bring them, and has no cause or context. Only a package of `EXTRAS` that
    is absent counts: any other ImportError from inside an installed one (a dependency of
    its own, no libpq) is raised as it is, since its words say more.
    """
    absent: list[str] = []
    for module in modules:
        if sys.modules.get(module) is not None:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            lacking = (exc.name or "").partition(".")[0]  # aiomysql without PyMySQL: pymysql
            if exc.name != module and (lacking == module or lacking not in EXTRAS):
                raise
            if lacking not in absent:
                absent.append(lacking)
            if lacking != module and not _installed(module):
                absent.append(module)
    if not absent:
        return None
    names = [EXTRAS[module][0] for module in absent]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    extras = ",".join(dict.fromkeys(EXTRAS[module][1] for module in absent))
    return ModuleNotFoundError(
        f"{function} needs {listed}: pip install 'securedb[{extras}]'", name=absent[0]
    )


def _installed(module: str) -> bool:
    """`module` is there to import (whether or not its own imports would succeed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(function: str, modules: Iterable[str]) -> None:
    """Import `modules`, or raise `missing`'s error.

    Raises:
        ModuleNotFoundError: one of `modules` is not installed.
    """
    error = missing(function, modules)
    if error is not None:
        raise error
