"""`make mutate`: mutation testing of securedb's security core, and the score per module.

    python scripts/mutate.py                       # every module of the core
    python scripts/mutate.py 'securedb.tls.*'      # only these mutants (mutmut's globs)
    python scripts/mutate.py --report              # the table of the last run, nothing run

mutmut (configured under ``[tool.mutmut]`` in pyproject.toml) mutates the core into
``mutants/`` and runs, for each mutant, only the tests that call the mutated function,
with one worker. Those tests share one bed, started here and stopped at the end
(bed/held.py), instead of starting one per mutant. Results are kept in ``mutants/``: a
second run only tests what changed (delete the directory to start again), while naming
mutants tests those again. Not part of CI: a full run takes about two hours, much of it
in surviving (equivalent) mutants of functions that every bed test calls.

The table counts each module's mutants by outcome; the score is killed (timeouts
included) over the mutants tested. Survivors are listed by name; ``mutmut show NAME``
prints the change.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
# mutmut's exit codes by outcome (mutmut.stats.status_by_exit_code, kept here so the
# report needs no import of mutmut).
KILLED = {1, 3}
SURVIVED = {0}
TIMEOUT = {36, -24, 24, 152, 255}
NO_TESTS = {5, 33}
# mutmut ends a mutant by CPU time, so one that deadlocks (a lock never released) uses
# none and would wait forever: after this many seconds without CPU it gets SIGXCPU, which
# mutmut counts as a timeout.
STALLED_AFTER = 180.0
COLUMNS = ("killed", "survived", "timeout", "no tests", "not run", "other", "total", "score")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutate.py", description=__doc__)
    parser.add_argument("mutants", nargs="*", help="mutant names or globs (default: all)")
    parser.add_argument("--report", action="store_true", help="only print the last results")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    code = 0 if args.report else run(args.mutants)
    print(report(load_results()))
    return code


def run(mutants: list[str]) -> int:
    """mutmut in this process (its workers are forks of it) while it holds the bed."""
    sys.path.insert(0, str(ROOT))
    from bed.bed import can_start  # the bed imports no securedb: mutmut's copy is tested
    from bed.held import hold

    reason = can_start()
    if reason:
        print(f"mutate: the bed cannot start: {reason}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the bed on the way out
    from mutmut.__main__ import cli

    stop = threading.Event()
    watchdog = threading.Thread(target=_end_stalled_mutants, args=(stop,), daemon=True)
    watchdog.start()
    with hold():
        try:
            cli.main(["run", "--max-children", "1", *mutants], standalone_mode=False)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        finally:
            stop.set()
    return 0


def _end_stalled_mutants(stop: threading.Event) -> None:
    """SIGXCPU to a mutant whose CPU time has not moved for `STALLED_AFTER` seconds."""
    seen: dict[int, tuple[int, float]] = {}
    while not stop.wait(10):
        now = time.monotonic()
        for pid, cpu in _mutant_workers():
            last = seen.get(pid)
            if last is None or last[0] != cpu:
                seen[pid] = (cpu, now)
            elif now - last[1] > STALLED_AFTER:
                print(f"mutate: a mutant used no CPU for {STALLED_AFTER:.0f} s: ended", flush=True)
                os.kill(pid, signal.SIGXCPU)
                del seen[pid]


def _mutant_workers() -> Iterator[tuple[int, int]]:
    """This process's mutmut workers (titled ``mutmut: <mutant>``) and their CPU ticks."""
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if title.startswith(b"mutmut: ") and int(fields[1]) == os.getpid():
            yield int(proc.name), int(fields[11]) + int(fields[12])  # utime + stime


def load_results() -> dict[str, dict[str, int | None]]:
    """Exit codes by mutant name, per module (``securedb.tls``)."""
    results: dict[str, dict[str, int | None]] = {}
    for meta in sorted(MUTANTS.glob("securedb/**/*.py.meta")):
        module = ".".join(meta.relative_to(MUTANTS).with_suffix("").with_suffix("").parts)
        data: dict[str, Any] = json.loads(meta.read_text())
        if data["exit_code_by_key"]:
            results[module] = data["exit_code_by_key"]
    return results


def outcome(code: int | None) -> str:
    if code is None:
        return "not run"
    for name, codes in (
        ("killed", KILLED),
        ("survived", SURVIVED),
        ("timeout", TIMEOUT),
        ("no tests", NO_TESTS),
    ):
        if code in codes:
            return name
    return "other"


def report(results: dict[str, dict[str, int | None]]) -> str:
    """The per-module table, then the survivors by name."""
    if not results:
        return "mutate: no results yet; run `make mutate`"
    width = max(len(m) for m in [*results, "total"])
    lines = [f"{'module':<{width}}  " + "  ".join(f"{c:>8}" for c in COLUMNS)]
    everything: Counter[str] = Counter()
    survivors: list[str] = []
    for module, codes in sorted(results.items()):
        counts = Counter(outcome(c) for c in codes.values())
        everything.update(counts)
        lines.append(_row(module, counts, width))
        survivors += sorted(n for n, c in codes.items() if outcome(c) in ("survived", "no tests"))
    lines.append(_row("total", everything, width))
    if survivors:
        lines += ["", f"survivors and untested mutants ({len(survivors)}):"]
        lines += [f"  {name}" for name in survivors]
    return "\n".join(lines)


def _row(name: str, counts: Counter[str], width: int) -> str:
    total = sum(counts.values())
    tested = counts["killed"] + counts["timeout"] + counts["survived"] + counts["no tests"]
    score = f"{100 * (counts['killed'] + counts['timeout']) / tested:.1f}%" if tested else "-"
    cells = [*(str(counts[c]) for c in COLUMNS[:-2]), str(total), score]
    return f"{name:<{width}}  " + "  ".join(f"{c:>8}" for c in cells)


if __name__ == "__main__":
    sys.exit(main())
