"""The outputs: results.json, a Markdown report with the tables, one box plot per case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.harness import fmt_ns


def write(results: dict[str, Any], out: Path, *, plots: bool = True) -> list[Path]:
    """Write results.json, README.md and (if `plots`) one PNG per case into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    images: dict[str, str] = {}
    if plots:
        for case_id, case in results["cases"].items():
            path = out / f"{case_id}.png"
            if plot(case, path):
                images[case_id] = path.name
                written.append(path)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    written.append(path)
    path = out / "README.md"
    path.write_text(markdown(results, images))
    written.append(path)
    return written


def mark(met: bool | None) -> str:
    return {True: "✅ met", False: "❌ missed", None: "—"}[met]


def markdown(results: dict[str, Any], images: dict[str, str]) -> str:
    machine, packages = results["machine"], results["packages"]
    lines = [
        "# securedb benchmarks",
        "",
        f"Produced by `python -m benchmarks.run` ({results['scale']['name']} run) on "
        f"{results['date']}, in {results['duration_seconds']:.0f} s, against the local "
        "bed (real PostgreSQL, MariaDB, PgBouncer and moto servers on this machine). "
        "How to run it and what each case measures: "
        "`benchmarks/README.md` in the repository.",
        "",
        "The fleet soak (`make soak`: both example apps under gunicorn and uvicorn through "
        "rotation, expiry, a partition, a writer flip and a killed worker) has its own page: "
        "[soak.md](soak.md).",
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs "
        f"({machine['cpu']}), Python {machine['python']}.",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in packages.items()) + ".",
        "",
        "Method: a warm-up, then the contenders run interleaved (A B C, B C A, …) for N "
        "rounds; "
        "per-call costs are batches timed with `perf_counter_ns` and divided by the "
        "batch's calls. Median, p99 and IQR are over the samples (a sample is a batch, a "
        "process or a connection as each case says; with few samples p99 is near the "
        "maximum). The ratio is the contender's median over its baseline's median; in "
        "brackets, its 95% bootstrap interval (how far this run's noise lets it move).",
        "",
        *(
            [
                "**Quick run**: the counts are tiny, so these numbers show that the harness "
                "works, not how fast anything is.",
                "",
            ]
            if results["scale"]["name"] != "full"
            else []
        ),
        "## Summary",
        "",
        "| case | target for securedb | securedb | met |",
        "|---|---|---|---|",
    ]
    for case_id, case in results["cases"].items():
        lines.append(
            f"| [{case['title']}](#{case_id}) | {case['target']} | {case['verdict']} "
            f"| {mark(case['met'])} |"
        )
    for case_id, case in results["cases"].items():
        lines += ["", f'<a id="{case_id}"></a>', "", f"## {case['title']}", ""]
        lines += [f"Target: {case['target']}. **{mark(case['met'])}**: {case['verdict']}.", ""]
        lines += [case.get("method", ""), "", *contender_table(case), ""]
        lines += extra_lines(case)
        if case.get("error"):
            lines += [f"The case failed: `{case['error']}`", ""]
        if case_id in images:
            lines += [f"![{case['title']}]({images[case_id]})", ""]
    return "\n".join(lines).rstrip() + "\n"


def contender_table(case: dict[str, Any]) -> list[str]:
    rows = [
        f"| contender ({case['unit']}) | median | p99 | IQR | n | ratio to baseline | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in case.get("contenders", []):
        name = f"**{c['name']}**" if c["securedb"] else c["name"]
        if c["unavailable"]:
            rows.append(f"| {name} | — | — | — | — | — | could not run: {c['unavailable']} |")
            continue
        ratio = "baseline" if c["baseline"] == c["name"] else "—"
        if c["ratio"] is not None and c["baseline"] != c["name"]:
            ci = c.get("ratio_ci95")
            spread = f" ({ci[0]:.3g}–{ci[1]:.3g})" if ci else ""
            ratio = f"{c['ratio']:.3g}×{spread} {c['baseline']}"
        note = c["note"] or (f"batches of {c['batch']}" if c["batch"] > 1 else "")
        rows.append(
            f"| {name} | {fmt_ns(c['median'])} | {fmt_ns(c['p99'])} | {fmt_ns(c['iqr'])} "
            f"| {c['n']} | {ratio} | {note} |"
        )
    return rows


def extra_lines(case: dict[str, Any]) -> list[str]:
    extra = case.get("extra") or {}
    lines = []
    if "heavy_modules_loaded" in extra:
        lines.append("Heavy modules (boto3, botocore, sqlalchemy, psycopg, pymysql) loaded:")
        lines.append("")
        for name, mods in extra["heavy_modules_loaded"].items():
            lines.append(f"- `{name}`: {', '.join(mods) if mods else 'none'}")
        lines.append("")
    if "loop_and_call_overhead_ns" in extra:
        overhead = fmt_ns(extra["loop_and_call_overhead_ns"])
        lines += [f"A loop calling a no-op function costs {overhead} per call.", ""]
    if "fetches_per_forced_refresh" in extra:
        lines += ["Signings / fetches caused by one forced refresh, per trial:", ""]
        for name, counts in extra["fetches_per_forced_refresh"].items():
            lines.append(f"- {name}: {counts}")
        if extra.get("refresh_errors"):
            lines.append(f"- errors while refreshing: {extra['refresh_errors']}")
        lines.append("")
    if "storm_wall_ns" in extra:
        lines += ["Wall time of each storm (first connect to last close):", ""]
        for name, walls in extra["storm_wall_ns"].items():
            lines.append(f"- {name}: {', '.join(fmt_ns(w) for w in walls)}")
        for c in case.get("contenders", []):
            if c.get("error_examples"):
                lines.append(f"- {c['name']} errors: {'; '.join(c['error_examples'])}")
        lines.append("")
    if "flip_totals" in extra:
        lines += flip_lines(extra)
    return lines


FLIP_COLUMNS = (
    "**Columns.** *Promotion → first commit*: seconds from the new writer's promotion to "
    "the first unit of work acknowledged by it (median and worst over the flips). *All 8 "
    "back*: flips in which every worker committed on the new writer within the flip. "
    "*Acknowledged*: units the application saw commit, before and after the flip (more "
    "for a contender whose flips last longer). *Errors*: exceptions that reached "
    "the application, by class (for the AWS wrapper this includes each "
    "`FailoverSuccessError` it had to catch before running the unit again; that count is "
    "also shown alone). *In doubt*: units whose outcome the tool said it could not know "
    "(securedb's `TransactionOutcomeUnknown`, the wrapper's "
    "`TransactionResolutionUnknownError`); in brackets, how many of them were on the new "
    "writer afterwards, committed after all. *Lost*: acknowledged units whose row is not "
    "on the new writer after the run. *Duplicated*: tokens present more than once."
)


def flip_lines(extra: dict[str, Any]) -> list[str]:
    """The Aurora flip case: each contender's fates over all flips, then flip by flip."""
    lines = [
        "What the application saw, over all flips:",
        "",
        "| contender | promotion → first commit (median / max) | all 8 back | acknowledged "
        "| errors | of which FailoverSuccessError | in doubt (committed) | lost | duplicated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in extra["flip_totals"].items():
        errors = ", ".join(f"{k} × {v}" for k, v in sorted(t["errors"].items()))
        missing = t["no_commit_on_new_writer"]
        first = f"{_s(t['first_commit_median_s'])} / {_s(t['first_commit_max_s'])}" + (
            f" ({missing} flips with none)" if missing else ""
        )
        lines.append(
            f"| {name} | {first} | {t['all_workers_recovered']} of {t['flips']} "
            f"| {t['acknowledged']} | {sum(t['errors'].values())}"
            + (f" ({errors})" if errors else "")
            + f" | {t['failover_success']} | {t['in_doubt']} ({t['in_doubt_committed']}) "
            f"| {t['lost']} | {t['duplicated']} |"
        )
    lines += ["", FLIP_COLUMNS, "", "Flip by flip:", ""]
    for name, flips in extra["flips"].items():
        for i, f in enumerate(flips, 1):
            retries = ", ".join(f"{k} × {v}" for k, v in sorted(f["retries"].items()))
            lines.append(
                f"- {name}, flip {i}: promoted {_s(f['promotion_s'])} after the writer "
                f"stopped; first commit on the new writer {_s(f['first_commit_s'])} after "
                f"the promotion, all 8 workers {_s(f['all_workers_s'])}"
                + (
                    f" (the cluster name moved at {_s(f['dns_moved_s'])})"
                    if f.get("dns_moved_s") is not None
                    else ""
                )
                + "; "
                f"{f['acknowledged']} acknowledged; errors {f['errors'] or 'none'}; in doubt "
                f"{f['in_doubt']} ({f['in_doubt_committed']} committed); lost {f['lost']}, "
                f"duplicated {f['duplicated']}"
                + (f"; retried inside run_transaction: {retries}" if retries else "")
                + (f"; {f['stuck_workers']} workers still running" if f["stuck_workers"] else "")
            )
    examples = {
        k: v for flips in extra["flips"].values() for f in flips for k, v in f["examples"].items()
    }
    if examples:
        lines += ["", "An example of each error class:", ""]
        lines += [f"- `{text}`" for _, text in sorted(examples.items())]
    return [*lines, ""]


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"


def plot(case: dict[str, Any], path: Path) -> bool:
    """A horizontal box plot of every contender's samples; False if there is nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [c for c in case.get("contenders", []) if c["samples"]]
    if not ran:
        return False
    everything = [s for c in ran for s in c["samples"]]
    unit, scale = "ns", 1.0
    for name, factor in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if sorted(everything)[len(everything) // 2] >= factor:
            unit, scale = name, factor
            break
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(ran) + 1.6))
    boxes = ax.boxplot(
        [[s / scale for s in c["samples"]] for c in reversed(ran)],
        orientation="horizontal",
        patch_artist=True,
        showfliers=True,
        flierprops={"markersize": 2},
    )
    for box, c in zip(boxes["boxes"], reversed(ran), strict=True):
        box.set_facecolor("#4c9be8" if c["securedb"] else "#d9d9d9")
    ax.set_yticks(range(1, len(ran) + 1), [c["name"] for c in reversed(ran)], fontsize=8)
    if max(everything) / max(min(everything), 1e-9) > 30:
        ax.set_xscale("log")
    ax.set_xlabel(f"{case['unit'].replace('ns', unit, 1)} (blue: securedb)")
    ax.set_title(case["title"], fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
