"""A user's code type-checks under mypy --strict, as the docs write it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("typing") / "user_script.py"


def test_a_users_script_passes_mypy_strict() -> None:
    """Every public entry point, `pool().invalidate()` included (psycopg_pool's own pool
    type has no such method: `pool()` must return securedb's)."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
        cwd=SCRIPT.parents[2],
    )
    assert done.returncode == 0, done.stdout + done.stderr
