"""The README's first command runs this demo; CI runs it too, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.bed, pytest.mark.slow]


def test_demo_runs_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every request succeeded" in result.stdout
    assert "credentials refused, fetched again and retried" in result.stdout
