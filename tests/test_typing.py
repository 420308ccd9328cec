"""A user's code type-checks under mypy --strict, as the docs write it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("typing") / "user_script.py"


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=SCRIPT.parents[2],
    )


def test_a_users_script_passes_mypy_strict() -> None:
    """Every public entry point, `pool().invalidate()` included (psycopg_pool's own pool
    type has no such method: `pool()` must return securedb's)."""
    done = mypy(SCRIPT)
    assert done.returncode == 0, done.stdout + done.stderr


MISTAKES = """
import securedb

conn = securedb.connect("postgresql://app@db/app", auth="iam", driver="pymysql")
conn.pgconn
securedb.run_transaction("postgresql://app@db/app", lambda conn: 1)
"""


def test_the_types_catch_mistakes(tmp_path: Path) -> None:
    """The return and target types are real: not Any, which would let both lines pass."""
    script = tmp_path / "mistakes.py"
    script.write_text(MISTAKES)
    out = mypy(script).stdout
    assert '"Connection[Any]" has no attribute "pgconn"' in out
    assert 'Argument 1 to "run_transaction" has incompatible type "str"' in out
