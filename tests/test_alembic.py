"""examples/alembic: `alembic upgrade head` on the bed with IAM tokens, sync and async."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bed import postgres
from bed.bed import Bed

pytestmark = pytest.mark.bed

INI = Path(__file__).parents[1] / "examples" / "alembic" / "alembic.ini"


def alembic(bed: Bed, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(INI), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def tables(bed: Bed) -> set[str]:
    out = bed.primary.psql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database="app"
    )
    return set(out.split())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_upgrade_and_downgrade_with_iam(bed: Bed, aws_env: dict[str, str], mode: str) -> None:
    bed.primary.psql(
        f"DROP TABLE IF EXISTS orders, alembic_version; GRANT CREATE ON SCHEMA public TO "
        f"{postgres.IAM_USER}",
        database="app",
    )
    env = {
        **aws_env,
        "SECUREDB_URL": f"postgresql://{postgres.IAM_USER}@localhost:{bed.primary.port}/app",
        "SECUREDB_AUTH": "iam",
        "SECUREDB_CA_BUNDLE": str(bed.pki.ca),
    }
    extra = ["-x", "mode=async"] if mode == "async" else []
    before = bed.verifier_log.read_text().count("iam_user ok")

    upgraded = alembic(bed, env, *extra, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert {"orders", "alembic_version"} <= tables(bed)
    assert bed.verifier_log.read_text().count("iam_user ok") > before  # logged in by token

    downgraded = alembic(bed, env, *extra, "downgrade", "base")
    assert downgraded.returncode == 0, downgraded.stderr
    assert "orders" not in tables(bed)
    assert "X-Amz" not in upgraded.stderr + downgraded.stderr
