"""Fresh-process cases: the cost of `import`, and of the first IAM token of a process.

Each run is a new interpreter; the child times itself with `perf_counter_ns` from just
before the import to just after the work, so interpreter start-up is left out for every
contender alike. The children run interleaved, one per contender per round.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.context import REGION, Ctx, missing
from benchmarks.harness import Contender, Scale

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("boto3", "botocore", "sqlalchemy", "psycopg", "pymysql")
IMPORT_LIMIT_NS = 30_000_000
NO_OTEL = "import securedb, OpenTelemetry API not installed"
FIRST_TOKEN_RATIO = 1 / 3

CHILD = """
import sys, time, json
started = time.perf_counter_ns()
{body}
elapsed = time.perf_counter_ns() - started
print(json.dumps({{"ns": elapsed, "heavy": [m for m in {heavy!r} if m in sys.modules],
                  "result": str(result)[:40]}}))
"""


def child(body: str) -> dict[str, Any]:
    """Run `body` in a fresh interpreter; its own timing and the heavy modules it loaded."""
    code = CHILD.format(body=body, heavy=HEAVY)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def child_run(body: str, seen: dict[str, Any]) -> harness.Run:
    def run(n: int) -> list[float]:
        out = []
        for _ in range(n):
            answer = child(body)
            seen.update(answer)
            out.append(float(answer["ns"]))
        return out

    return run


def import_cost(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    seen: dict[str, dict[str, Any]] = {}
    contenders = []
    for name, module, is_ours, before in (
        ("import securedb", "securedb", True, ""),
        (NO_OTEL, "securedb", True, "sys.modules['opentelemetry'] = None\n"),
        ("import aws_advanced_python_wrapper", "aws_advanced_python_wrapper", False, ""),
        ("import boto3", "boto3", False, ""),
    ):
        seen[name] = {}
        body = f"{before}import {module}\nresult = {module}.__name__"
        contenders.append(
            Contender(
                name,
                child_run(body, seen[name]),
                baseline="import boto3",
                securedb=is_ours,
                unavailable=missing(module),
            )
        )
    interleave_runs(contenders, scale)
    rows = harness.results(contenders)
    heavy = {name: s.get("heavy") for name, s in seen.items()}
    ours, no_otel = harness.find(rows, "import securedb"), harness.find(rows, NO_OTEL)
    met = harness.ok(ours) and ours["median"] < IMPORT_LIMIT_NS and heavy["import securedb"] == []
    return {
        "title": "Import cost (fresh process each run)",
        "unit": "ns per import",
        "target": "`import securedb` < 30 ms, and loads none of "
        + ", ".join(f"`{m}`" for m in HEAVY),
        "met": met,
        "verdict": f"median {harness.fmt_ns(ours['median'])} "
        f"({harness.fmt_ns(no_otel['median'])} without the OpenTelemetry API); heavy "
        f"modules loaded: {', '.join(heavy['import securedb'] or []) or 'none'}",
        "contenders": rows,
        "extra": {"heavy_modules_loaded": heavy},
        "method": f"{scale.subprocess_runs} fresh interpreters per contender, interleaved; "
        "each times its own import (interpreter start-up excluded). The OpenTelemetry "
        "row blocks `opentelemetry` (`sys.modules['opentelemetry'] = None`), as if its "
        "API were not installed.",
    }


SECUREDB_TOKEN = """
from securedb.credentials.iam import IamTokenSource
result = IamTokenSource("localhost", {port}, "{user}", "{region}", 900).fetch().password
"""
BOTO3_TOKEN = """
import boto3
result = boto3.client("rds").generate_db_auth_token("localhost", {port}, "{user}", "{region}")
"""


def first_token(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    args = {"port": ctx.pg_port, "user": "iam_user", "region": REGION}
    seen: dict[str, dict[str, Any]] = {"securedb": {}, "boto3": {}}
    contenders = [
        Contender(
            "securedb IamTokenSource(...).fetch()",
            child_run(SECUREDB_TOKEN.format(**args), seen["securedb"]),
            baseline="boto3.client('rds').generate_db_auth_token",
            securedb=True,
        ),
        Contender(
            "boto3.client('rds').generate_db_auth_token",
            child_run(BOTO3_TOKEN.format(**args), seen["boto3"]),
            baseline="boto3.client('rds').generate_db_auth_token",
        ),
    ]
    interleave_runs(contenders, scale)
    rows = harness.results(contenders)
    ours = rows[0]
    met = harness.ok(ours) and ours["ratio"] is not None and ours["ratio"] <= FIRST_TOKEN_RATIO
    return {
        "title": "First IAM token in a fresh process (imports included)",
        "unit": "ns per process",
        "target": "≤ 1/3 of boto3's time",
        "met": met,
        "verdict": f"{harness.fmt_ns(ours['median'])}, "
        f"{_ratio(ours['ratio'])} of boto3's {harness.fmt_ns(rows[1]['median'])}",
        "contenders": rows,
        "extra": {
            "heavy_modules_loaded": {
                row["name"]: seen[key].get("heavy") for row, key in zip(rows, seen, strict=True)
            }
        },
        "method": f"{scale.subprocess_runs} fresh interpreters per contender, interleaved; "
        "each times its imports and one signed token (interpreter start-up excluded). The "
        "AWS credentials are in the environment (the bed's test key), as on Lambda.",
    }


def _ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def interleave_runs(contenders: list[Contender], scale: Scale) -> None:
    """Fresh-process runs: one warm-up each (it fills the bytecode caches), then rounds."""
    harness.interleave(
        contenders,
        dataclasses.replace(scale, rounds=scale.subprocess_runs, warmup=1),
        calibrated=False,
    )
