"""The soak's report: ``soak.json`` (the raw series and figures), ``soak.png`` (requests
and errors per second with the events marked) and ``soak.md`` (the tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.soak.analysis import verdicts

EVENT_LABELS = {
    "kill_django": "gunicorn worker SIGKILL",
    "kill_fastapi": "uvicorn worker SIGKILL",
    "reference": "reference sample",
    "rotate_set": "secret rotated (setSecret)",
    "flip": "writer flip",
}


def write(summary: dict[str, Any], about: dict[str, str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "soak.json", out / "soak.png", out / "soak.md"]
    paths[0].write_text(json.dumps({"about": about, **summary}, indent=1, default=str) + "\n")
    plot(summary, paths[1])
    paths[2].write_text(markdown(summary, about))
    return paths


def plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    apps = [a for a in s["series"] if a != "second"]
    fig, axes = plt.subplots(len(apps), 1, figsize=(12, 3.4 * len(apps)), sharex=True)
    x = s["series"]["second"]
    for ax, app in zip(axes, apps, strict=True):
        data = s["series"][app]
        ax.plot(x, data["requests"], lw=0.8, color="tab:blue", label="requests/s")
        _mark_events(ax, s["events"])
        ax.set_ylabel(f"{app}: requests per second", color="tab:blue")
        ax.set_ylim(bottom=0)
        errors = ax.twinx()  # errors on a scale of their own, so that one is visible
        errors.bar(x, data["errors"], width=1.0, align="edge", color="tab:red", label="errors/s")
        errors.set_ylim(0, max(5, *data["errors"]) * 1.25)
        errors.set_ylabel("errors per second", color="tab:red")
    handles, labels = axes[0].get_legend_handles_labels()
    extra = errors.get_legend_handles_labels()
    fig.legend(
        handles + extra[0],
        labels + extra[1],
        loc="upper center",
        ncol=3,
        fontsize=8,
        bbox_to_anchor=(0.5, 0.955),
    )
    axes[-1].set_xlabel("seconds since the load started")
    fig.suptitle("securedb fleet soak: gunicorn + Django (IAM), uvicorn + FastAPI (secret)")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mark_events(ax: Any, evs: list[dict[str, Any]]) -> None:
    partition = [e["at"] for e in evs if e["name"] in ("partition", "heal")]
    if len(partition) == 2:
        ax.axvspan(*partition, color="orange", alpha=0.2, label="replica partitioned")
    for e in evs:
        label = EVENT_LABELS.get(e["name"])
        if label is None:
            continue
        style = {"flip": ("black", "-"), "rotate_set": ("green", ":")}.get(
            e["name"], ("grey", "--")
        )
        ax.axvline(e["at"], color=style[0], ls=style[1], lw=1)
        low = e["name"] == "reference"  # at the foot: a rotation's label may share the top
        ax.text(
            e["at"],
            0.02 if low else 1.0,
            f" {label}",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            va="bottom" if low else "top",
            ha="right",
            fontsize=7,
            color=style[0],
        )


def markdown(s: dict[str, Any], about: dict[str, str]) -> str:
    met = verdicts(s)
    lines = [
        "# Fleet soak",
        "",
        f"Produced by `{about['command'].strip()}` on {about['date']}, "
        f"{s['duration']:.0f} s of load.",
        f"Machine: {about['machine']}.",
        "",
        "Django under `gunicorn --preload` (4 sync workers, Django's pool) on IAM tokens",
        "(`iam_token_ttl=60`); FastAPI under `uvicorn --workers 4` on `async_engine` with a",
        "Secrets Manager secret (`secret_ttl=60`) rotated on schedule. 8 clients per app",
        "send one request after another: half writes (`INSERT … RETURNING id`), half reads.",
        "Django reads from the writer; FastAPI reads from the reader endpoint and from the",
        "writer while the reader fails (so the replica's partition slows reads, never fails",
        "them). Method and definitions: `benchmarks/soak/` in the repository.",
        "",
        "How to read it:",
        "",
        "- *Flip window*: from the writer's stop to the switch of the cluster endpoint to the",
        "  promoted replica. A failure inside it is allowed only if its COMMIT was in flight",
        "  (the app answers 503 `TransactionOutcomeUnknown`); writes that failed before COMMIT",
        "  are re-run on the new writer by the apps (`run_transaction_async`, and the same",
        "  loop in the Django views).",
        "- *In flight on a SIGKILLed worker*: a request that lost its connection, with no",
        "  HTTP answer, on the app whose worker was killed while it was in flight. SIGKILL",
        "  ends those by definition; they are counted apart, and any other failure counts",
        "  as *outside*.",
        "- The partition: a pooled reader connection finds the silent replica only through",
        "  securedb's keepalive and TCP user timeout (9 s); meanwhile every FastAPI client",
        "  waits on a read, so that app's throughput drops to nothing for about that long.",
        "  Then the example skips the reader for 5 s at a time, and each retry costs the",
        "  reader's 2 s connect timeout. No request fails.",
        "",
        "![requests and errors per second](soak.png)",
        "",
        "## Verdicts",
        "",
        "| property | met |",
        "|---|---|",
        *[f"| {name} | {'✅' if ok else '❌'} |" for name, ok in met.items()],
        "",
        "## Requests",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests | {s['requests']} |",
        f"| acknowledged writes | {s['acked_writes']} |",
        f"| acknowledged writes lost | {s['lost_writes']} |",
        f"| failed outside the flip window | {s['failed_outside']} |",
        f"| failed inside the flip window | {s['failed_in_flip']} "
        f"(not a lost COMMIT: {s['failed_in_flip_not_commit']}) |",
        f"| failed in flight on a SIGKILLed worker | {s['failed_on_killed_worker']} |",
        "",
        "Failures by kind and window:",
        "",
        "| app | kind | window | count |",
        "|---|---|---|---|",
        *[f"| {f['app']} | {f['kind']} | {f['window']} | {f['count']} |" for f in s["failures"]],
        "",
        "## Events",
        "",
        "| at (s) | event | took (s) | detail |",
        "|---|---|---|---|",
        *[_event_row(e) for e in s["events"]],
        "",
        "## Workers: reference sample (after warm-up) and end",
        "",
        "Read from `/proc/<pid>` of each worker (children of the gunicorn master and of the",
        "uvicorn supervisor). Figures at the reference sample → at the end. The open file",
        "descriptors are split: HTTP connections being served (as many as the load has in",
        "flight), database connections (the pools': they follow the load up to the pool's",
        "size and are replaced after a failover) and the rest (files, pipes, listening",
        "socket, epoll, AWS API connections), which is judged. Growth is that of the",
        "floors, the least value over the samples of a tenth of the run from the reference",
        "and up to the end: a leak raises the floor, a descriptor open for a moment does not.",
        "",
        "| app | pid | threads | fds: all (HTTP, DB, rest) | RSS (MiB) "
        "| growth of the floor: threads / other fds / RSS |",
        "|---|---|---|---|---|---|",
        *[_worker_row(w) for w in s["workers"]],
        "",
        "## Credential fetches per worker",
        "",
        "Counted by securedb's `securedb.credential.fetches` OpenTelemetry counter, read by an",
        "in-memory reader in each worker (`examples/stats.py`, `GET /stats`). An IAM fetch is",
        "one token signed; a secret fetch is one `GetSecretValue` (two in a rotation's",
        "window: AWSCURRENT, then AWSPENDING). Bound: the first fetch, one per refresh",
        "period over the worker's life, and two per rotation it saw.",
        "",
        "| app | pid | source | fetches (failed) | age (s) | per minute | period (s) | bound |",
        "|---|---|---|---|---|---|---|---|",
        *[_fetch_row(f) for f in s["fetches"]],
        "",
        "## Shutdown: seconds from SIGTERM to the master until each worker exited",
        "",
        "| app | pid | seconds |",
        "|---|---|---|",
        *[
            f"| {app} | {pid} | {'still running' if t is None else f'{t:.2f}'} |"
            for app, exits in s["exits"].items()
            for pid, t in exits.items()
        ],
        "",
    ]
    return "\n".join(lines)


def _event_row(e: dict[str, Any]) -> str:
    detail = ""
    if "victim" in e:
        respawn = e["respawn_s"]
        took = "not respawned" if respawn is None else f"respawned in {respawn:.1f} s"
        detail = f"pid {e['victim']} killed; {took} as {e['respawned']}"
    return f"| {e['at']:.1f} | {e['name']} | {e['end'] - e['at']:.2f} | {detail} |"


def _worker_row(w: dict[str, Any]) -> str:
    (t0, t1), (r0, r1) = w["threads"], w["rss_kib"]
    fds = " → ".join(
        f"{w['fds'][i]} ({w['fds_http'][i]}, {w['fds_db'][i]}, {w['fds_rest'][i]})" for i in (0, 1)
    )
    growth = " / ".join(
        f"{w[k] * 100:+.1f} %" for k in ("threads_growth", "fds_rest_growth", "rss_kib_growth")
    )
    return (
        f"| {w['app']} | {w['pid']} | {t0} → {t1} | {fds} | "
        f"{r0 / 1024:.1f} → {r1 / 1024:.1f} | {growth} |"
    )


def _fetch_row(f: dict[str, Any]) -> str:
    if f.get("missing"):
        return f"| {f['app']} | {f['pid']} | no /stats answer | | | | | |"
    return (
        f"| {f['app']} | {f['pid']} | {f['kind']} | {f['fetches']} ({f['failed']}) | "
        f"{f['age_s']:.0f} | {f['per_minute']:.2f} | {f['period_s']:.0f} | {f['bound']} |"
    )
