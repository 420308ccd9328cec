"""Benchmark securedb against bare drivers, pools and its peers on the local bed.

    .venv/bin/python -m benchmarks.run [--quick] [--out docs/benchmarks] [--case ID ...]
    .venv/bin/python -m benchmarks.run --case aurora_flip [--flips N]   # the Aurora flip only
    .venv/bin/python -m benchmarks.run --report-only   # redraw from results.json

The bed is started once; every case runs against its real servers. For the Aurora case the
process first moves into a private /etc/hosts (a mount namespace of its own), which only a
process with one thread can do; if it cannot, that case says why and is skipped.

Outputs: results.json, README.md (the tables, with whether securedb met each target) and
one PNG per case. With `--case`, and results of the same scale already in the output
directory, the cases run are merged into them: the other cases, and their plots, stay as
they were.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from bed.names import Hosts
from bed.procs import BedError
from benchmarks import (
    cases_async,
    cases_async_lag,
    cases_aurora,
    cases_connect,
    cases_credentials,
    cases_otel,
    cases_pooling,
    cases_startup,
)
from benchmarks import report as report_module
from benchmarks.context import Ctx
from benchmarks.harness import FULL, QUICK, Scale, failure

ROOT = Path(__file__).resolve().parents[1]
WRAPPER, SECRET_CACHE = "aws_advanced_python_wrapper", "aws_secretsmanager_caching"
AURORA = "aurora_flip"  # needs the private /etc/hosts, entered at start-up


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[Ctx, Scale], dict[str, Any]]
    requires: tuple[str, ...]  # peer modules; without them the case reports them missing


CASES = [
    Case("import_cost", cases_startup.import_cost, (WRAPPER, "boto3")),
    Case("cached_lookup", cases_credentials.cached_lookup, (SECRET_CACHE, "boto3")),
    Case("contention", cases_credentials.contention, (SECRET_CACHE, "boto3")),
    Case("first_token", cases_startup.first_token, ("boto3",)),
    Case("pool_checkout", cases_pooling.pool_checkout, ()),
    Case("per_query", cases_pooling.per_query, (WRAPPER,)),
    Case("otel_cost", cases_otel.otel_cost, ("opentelemetry.sdk",)),
    Case("new_connection", cases_connect.new_connection, (WRAPPER, "boto3")),
    Case("storm", cases_connect.storm, ()),
    Case("async_checkout", cases_async.async_checkout, (WRAPPER, "aiomysql")),
    Case("async_per_query", cases_async.async_per_query, (WRAPPER, "aiomysql", "asyncpg")),
    Case(
        "async_new_connection",
        cases_async.async_new_connection,
        (WRAPPER, "aiomysql", "asyncpg"),
    ),
    Case("loop_lag_refresh", cases_async_lag.loop_lag_refresh, (WRAPPER, "boto3", "asyncpg")),
    Case("loop_lag_cold_secret", cases_async_lag.loop_lag_cold_secret, (WRAPPER, "boto3")),
    Case(AURORA, cases_aurora.writer_flip, (WRAPPER,)),
]
PACKAGES = (
    "securedb",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "PyMySQL",
    "aiomysql",
    "asyncpg",
    "SQLAlchemy",
    "botocore",
    "boto3",
    "aws-advanced-python-wrapper",
    "aws-secretsmanager-caching",
    "matplotlib",
)


def run_cases(
    bed: Any,
    scale: Scale,
    cases: list[Case] | None = None,
    *,
    echo: bool = False,
    hosts: Hosts | None = None,
    hosts_missing: str | None = None,
) -> dict[str, Any]:
    """Run `cases` (default: all) on a started bed; the AWS environment must point at it.

    `hosts` is the private /etc/hosts the Aurora case needs (see `enter_hosts`); without
    it that case is skipped, saying `hosts_missing`.
    """
    ctx = Ctx(bed, hosts, hosts_missing)
    started = time.monotonic()
    out: dict[str, Any] = {}
    for case in cases if cases is not None else CASES:
        case_started = time.monotonic()
        try:
            with refreshers_stopped():
                result = case.run(ctx, scale)
        except Exception as exc:
            result = {"title": case.id, "target": "—", "met": False, "contenders": []}
            result.update(verdict="the case failed", error=failure(exc), unit="ns")
        result["seconds"] = round(time.monotonic() - case_started, 1)
        out[case.id] = result
        if echo:
            print(f"{case.id}: {result['verdict']} ({result['seconds']} s)", flush=True)
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "scale": dataclasses.asdict(scale),
        "machine": machine(),
        "packages": versions(),
        "bed_start_seconds": round(bed.start_seconds, 2),
        "duration_seconds": round(time.monotonic() - started, 1),
        "cases": out,
    }
    return scrub(results, {str(bed.root): "<bed>", str(ROOT): "<repo>", sys.prefix: "<venv>"})


@contextlib.contextmanager
def refreshers_stopped() -> Iterator[None]:
    """Close the credential caches a case made, and forget its `securedb.connect` connectors.

    `engine.dispose()` and `pool.close()` release their caches, but `securedb.connect`
    keeps its most recent connectors, and some cases make caches directly. Closing them
    keeps the next case (and, under pytest, the next test) free of their threads.
    """
    from securedb import _state
    from securedb.credentials.cache import RefreshAheadCache

    made: list[RefreshAheadCache] = []
    original = RefreshAheadCache.__init__

    def noting(self: RefreshAheadCache, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    RefreshAheadCache.__init__ = noting  # type: ignore[method-assign]
    try:
        yield
    finally:
        RefreshAheadCache.__init__ = original  # type: ignore[method-assign]
        _state.reset()
        for cache in made:
            cache.close()


def enter_hosts(directory: Path) -> tuple[Hosts | None, str | None]:
    """This process's own /etc/hosts (a copy in `directory`), or None and why not.

    Only a single-threaded process can enter it, so call this first, before the bed or
    anything else starts a thread; threads started afterwards share it.
    """
    from bed import names

    reason = names.can_enter()
    if reason:
        return None, reason
    try:
        return names.enter_private_hosts(directory / "hosts"), None
    except BedError as exc:
        return None, str(exc)


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    if commit:
        found["securedb"] += f" ({commit})"
    return found


def scrub(value: Any, replacements: dict[str, str]) -> Any:
    """`value` with machine-specific paths (the bed's directory, the checkout) replaced."""
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: scrub(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, replacements) for v in value]
    return value


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The results of a `--case` run laid over those of an earlier run of the same scale.

    The cases run now replace or join the earlier ones (in `CASES` order) and say in their
    method when they ran and on which securedb; everything else stays as it was.
    """
    order = {c.id: i for i, c in enumerate(CASES)}
    cases = dict(old["cases"])
    when = (
        f"Run on {new['date']} with `--case`, apart from the other cases (securedb "
        f"{new['packages']['securedb']}). "
    )
    for case_id, case in new["cases"].items():
        cases[case_id] = {**case, "method": when + case.get("method", ""), "run_date": new["date"]}
    packages = dict(old["packages"])
    packages.update((k, v) for k, v in new["packages"].items() if k not in packages)
    runs = [*old.get("partial_runs", []), {"date": new["date"], "cases": list(new["cases"])}]
    return {
        **old,
        "packages": packages,
        "cases": dict(sorted(cases.items(), key=lambda kv: order.get(kv[0], len(order)))),
        "partial_runs": runs,
    }


def write_merged(results: dict[str, Any], out: Path, ran: list[str]) -> list[Path]:
    """results.json and README.md for merged `results`; only the cases in `ran` are redrawn."""
    written, images = [], {}
    for case_id, case in results["cases"].items():
        path = out / f"{case_id}.png"
        if case_id in ran and report_module.plot(case, path):
            written.append(path)
        if path.exists():
            images[case_id] = path.name
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(report_module.markdown(results, images))
    return [*written, path, out / "README.md"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--out", default="docs/benchmarks", help="output directory")
    parser.add_argument("--case", action="append", choices=[c.id for c in CASES])
    parser.add_argument(
        "--flips", type=int, help="Aurora writer flips per contender (default: 5, quick: 1)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="redraw README.md and plots from results.json"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((Path(args.out) / "results.json").read_text())
        for path in report_module.write(results, Path(args.out)):
            print(f"wrote {path}")
        return 0

    from bed.bed import Bed, can_start

    reason = can_start()
    if reason:
        print(f"benchmarks: the bed cannot start here: {reason}", file=sys.stderr)
        return 1
    cases = [c for c in CASES if not args.case or c.id in args.case]
    scale = QUICK if args.quick else FULL
    if args.flips is not None:
        scale = dataclasses.replace(scale, flips=max(1, args.flips))
    with tempfile.TemporaryDirectory(prefix="securedb-bench-") as private:
        hosts, why = None, None
        if any(c.id == AURORA for c in cases):
            hosts, why = enter_hosts(Path(private))
            if why:
                print(f"benchmarks: {AURORA} will be skipped: {why}", file=sys.stderr)
        try:
            with Bed() as bed:
                os.environ.update(bed.aws_env())
                for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
                    os.environ.pop(name, None)
                print(f"bed up in {bed.start_seconds:.1f} s", flush=True)
                results = run_cases(bed, scale, cases, echo=True, hosts=hosts, hosts_missing=why)
        finally:
            if hosts is not None:
                hosts.close()
    previous = Path(args.out) / "results.json"
    old = json.loads(previous.read_text()) if args.case and previous.exists() else None
    if old is not None and old["scale"]["name"] == results["scale"]["name"]:
        written = write_merged(merge(old, results), Path(args.out), list(results["cases"]))
    else:
        written = report_module.write(results, Path(args.out))
    for path in written:
        print(f"wrote {path}")
    missed = [case_id for case_id, case in results["cases"].items() if not case["met"]]
    print("targets missed: " + (", ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
