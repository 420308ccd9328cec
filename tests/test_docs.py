"""The documentation: every Python block of README.md and docs/ runs, or says what it needs.

A block that needs a real database or AWS account is marked, on the line before its
fence, with ``<!-- docs: needs a database -->`` (or ``needs AWS``): it is compiled, not
run. Every other block runs in a process of its own, after the page's earlier runnable
blocks (a page reads top to bottom), with example AWS keys and no way to reach AWS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:<!-- docs: (?P<needs>needs [^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S
)
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SECUREDB_", "PG"))},
    "AWS_ACCESS_KEY_ID": "AKIADOCSEXAMPLE00000",
    "AWS_SECRET_ACCESS_KEY": "docs-example-secret-access-key",
    "AWS_DEFAULT_REGION": "eu-west-2",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: no call leaves the machine
    "SECUREDB_URL": "postgresql://app_user@mydb.abc123.eu-west-2.rds.amazonaws.com:5432/app",
    "SECUREDB_AUTH": "iam",
}


def blocks() -> list[tuple[str, int, str | None, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code")) + 1
            found.append((page.relative_to(ROOT).as_posix(), line, match["needs"], match["code"]))
    return found


BLOCKS = blocks()


def test_the_pages_have_blocks_and_most_run() -> None:
    assert len(BLOCKS) >= 15
    assert sum(needs is None for _, _, needs, _ in BLOCKS) > len(BLOCKS) / 2


@pytest.mark.parametrize(
    ("page", "line", "needs", "code"),
    [
        # A block that starts the bed needs its servers installed, as the bed's tests do.
        pytest.param(*b, id=f"{b[0]}:{b[1]}", marks=[pytest.mark.bed] if "from bed" in b[3] else [])
        for b in BLOCKS
    ],
)
def test_block(page: str, line: int, needs: str | None, code: str) -> None:
    compile(code, f"{page}:{line}", "exec")
    if needs is not None:
        return
    earlier = [c for p, n, needs_, c in BLOCKS if p == page and n < line and needs_ is None]
    done = subprocess.run(
        [sys.executable, "-c", "\n".join([*earlier, code])],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{page}:{line} failed:\n{done.stderr}"
