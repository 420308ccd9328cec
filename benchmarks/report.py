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
    return lines


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
