"""A writer flip on the emulated Aurora cluster: securedb's topology routing against the AWS
Advanced Python Wrapper's `failover_v2` plugin, and securedb with ``topology='off'``.

Every flip starts from a freshly rebuilt cluster (aurora-pg-1 the writer, aurora-pg-2 its
synchronous standby). Eight threads run units of work, each inserting one row with a
token of its own and reading `aurora_db_instance_identifier()` in the same statement; then
the writer is stopped at once, aurora-pg-2 promoted, and the cluster name's DNS moves to
it 30 s later. The flip ends when every thread has committed on the new writer, or 45 s
after the promotion. Each unit's fate is recorded (acknowledged, in doubt, or an error the
application saw), and the new writer's rows show what was lost or duplicated.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
from typing import Any

from benchmarks import harness
from benchmarks.context import Ctx, missing
from benchmarks.flip_load import (
    DNS_DELAY,
    OFF_RETRIES,
    WINDOW,
    WRAPPER_TIMEOUT,
    Load,
    flip,
    securedb_load,
    wrapper_load,
)
from benchmarks.harness import Contender, Scale

AUTO = "securedb, topology='auto'"
WRAPPER = "AWS wrapper, failover_v2"
OFF = "securedb, topology='off' (DNS only)"


def totals(flips: list[dict[str, Any]]) -> dict[str, Any]:
    """One contender's flips added up."""
    firsts = [f["first_commit_s"] for f in flips if f["first_commit_s"] is not None]
    errors: collections.Counter[str] = collections.Counter()
    for f in flips:
        errors.update(f["errors"])
    sums = ("acknowledged", "in_doubt", "in_doubt_committed", "lost", "duplicated")
    return {
        "flips": len(flips),
        "first_commit_median_s": statistics.median(firsts) if firsts else None,
        "first_commit_max_s": max(firsts) if firsts else None,
        "no_commit_on_new_writer": len(flips) - len(firsts),
        "all_workers_recovered": sum(f["all_workers_s"] is not None for f in flips),
        "errors": dict(errors),
        "failover_success": errors["FailoverSuccessError"],
        **{key: sum(f[key] for f in flips) for key in sums},
    }


def writer_flip(ctx: Ctx, scale: Scale) -> dict[str, Any]:
    names = [AUTO, WRAPPER, OFF]
    logs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    if ctx.hosts is None:
        why = ctx.hosts_missing or "no private /etc/hosts"
        contenders = [Contender(n, None, WRAPPER, n != WRAPPER, unavailable=why) for n in names]
        return _result(scale, contenders, logs, skipped=why)
    cluster = ctx.bed.aurora(ctx.hosts)
    loads: dict[str, Load] = {
        AUTO: lambda: securedb_load(ctx, cluster),
        WRAPPER: lambda: wrapper_load(ctx, cluster),
        OFF: lambda: securedb_load(ctx, cluster, topology="off"),
    }

    def run_of(name: str) -> harness.Run:
        def run(n: int) -> list[float]:
            samples = []
            for _ in range(n):
                logs[name].append(flip(cluster, loads[name]))
                first = logs[name][-1]["first_commit_s"]
                samples += [] if first is None else [first * 1e9]
            return samples

        return run

    contenders = [
        Contender(AUTO, run_of(AUTO), WRAPPER, securedb=True),
        Contender(
            WRAPPER, run_of(WRAPPER), WRAPPER, unavailable=missing("aws_advanced_python_wrapper")
        ),
        Contender(OFF, run_of(OFF), WRAPPER, securedb=True),
    ]
    flips = dataclasses.replace(scale, rounds=scale.flips, warmup=0)
    try:
        harness.interleave(contenders, flips, calibrated=False)
    finally:
        cluster.rebuild()
    return _result(scale, contenders, logs)


def _result(
    scale: Scale,
    contenders: list[Contender],
    logs: dict[str, list[dict[str, Any]]],
    skipped: str | None = None,
) -> dict[str, Any]:
    rows = harness.results(contenders)
    sums = {name: totals(flips) for name, flips in logs.items() if flips}
    ours = sums.get(AUTO)
    met = (
        ours is not None
        and not harness.find(rows, AUTO)["unavailable"]
        and ours["no_commit_on_new_writer"] == 0
        and ours["first_commit_max_s"] < DNS_DELAY
        and not ours["errors"]
        and ours["lost"] == ours["duplicated"] == 0
    )
    verdict = f"skipped: {skipped}" if skipped else "did not run"
    if ours is not None:
        median, worst = ours["first_commit_median_s"], ours["first_commit_max_s"]
        verdict = (
            f"first commit on the new writer {_s(median)} after the promotion (median, "
            f"max {_s(worst)})"
            if median is not None
            else "no commit on the new writer"
        )
        verdict += (
            "; "
            f"{sum(ours['errors'].values())} errors, {ours['in_doubt']} in doubt, "
            f"{ours['lost']} lost, {ours['duplicated']} duplicated"
        )
        ratio = harness.find(rows, AUTO)["ratio"]
        if ratio is not None:
            verdict += f"; {ratio:.2f}× the AWS wrapper's time"
    return {
        "title": "Aurora writer flip under load: securedb against the AWS wrapper",
        "unit": "ns from the promotion to the first commit on the new writer",
        "target": f"first commit on the new writer before the DNS switch ({DNS_DELAY:.0f} s) "
        "in every flip; no error reaching the application; none lost or duplicated",
        "met": bool(met),
        "verdict": verdict,
        "contenders": rows,
        "extra": {"flips": logs, "flip_totals": sums},
        "method": METHOD.format(flips=scale.flips),
    }


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"


METHOD = (
    "{flips} flips per contender, interleaved, each on a freshly rebuilt emulated Aurora "
    "PostgreSQL cluster (three TLS-only instances behind Aurora's names in a private "
    "/etc/hosts). 8 threads run units of work, each one `INSERT ... SELECT token, "
    "aurora_db_instance_identifier() RETURNING instance` and a COMMIT; then the writer is "
    "stopped at once, its synchronous standby promoted, and the cluster name's DNS moves "
    f"{DNS_DELAY:.0f} s later. A flip ends when every thread has committed on the new writer, "
    f"or {WINDOW:.0f} s after the promotion. securedb: `securedb.engine(cluster URL, "
    "pool_size=8)` and `securedb.run_transaction` with its defaults (topology='off': "
    f"`attempts={OFF_RETRIES['attempts']}, deadline={OFF_RETRIES['deadline']:.0f}`, so it "
    "can wait for the DNS); any exception it raises reached the application. AWS wrapper: "
    "one `AwsWrapperConnection` per thread, `plugins='failover_v2'`, "
    "`cluster_instance_host_pattern='?.<cluster domain>'`, "
    f"`failover_timeout_sec={WRAPPER_TIMEOUT}`, `connect_timeout=5` (it detects the "
    "`aurora-pg` dialect by itself); as its docs say, a "
    "unit is run again on the same connection after `FailoverSuccessError` (counted as an "
    "error the application had to catch), `TransactionResolutionUnknownError` is in doubt, "
    "and any other error opens a new connection. The ratio is the median time over the "
    "AWS wrapper's. Run alone with `python -m benchmarks.run --case aurora_flip` "
    "(`--flips N` for more or fewer flips)."
)
