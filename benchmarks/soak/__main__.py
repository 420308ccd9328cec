"""`python -m benchmarks.soak`: the fleet soak on a bed of its own (`make soak`).

Writes soak.json, soak.png and soak.md into --out (docs/benchmarks by default); the app
servers' logs stay in a temporary directory, printed at the end. Exit status 0 only if
every verdict is met.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

from bed.bed import Bed, can_start
from benchmarks.soak import analysis, report, runner


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument(
        "--report-only", action="store_true", help="redraw soak.png and soak.md from soak.json"
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((args.out / "soak.json").read_text())
        about = saved.pop("about")
        report.write(saved, about, args.out)
        return 0
    reason = can_start()
    if reason:
        print(f"soak: the bed cannot start: {reason}", file=sys.stderr)
        return 1
    logs = Path(tempfile.mkdtemp(prefix="securedb-soak-"))
    with Bed() as bed:
        summary = analysis.summarize(runner.run(bed, args.duration, logs))
    about = {
        "command": shlex.join(["python", "-m", "benchmarks.soak", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
    }
    for path in report.write(summary, about, args.out):
        print(f"soak: wrote {path}")
    print(f"soak: app server logs in {logs}")
    met = analysis.verdicts(summary)
    for name, ok in met.items():
        print(f"soak: {'met   ' if ok else 'MISSED'} {name}")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
