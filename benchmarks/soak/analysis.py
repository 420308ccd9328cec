"""The soak's verdicts, from what `runner.run` recorded.

A failed request is *inside the flip window* when its interval overlaps the flip (from
the writer's stop to the forwarder's switch to the promoted replica), and *in flight on
a killed worker* when it lost its connection (no HTTP answer) to the app whose worker
was killed while it was in flight. Everything else is *outside*, and must be 0; inside
the flip window only lost COMMITs (`TransactionOutcomeUnknown`) are allowed.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any

from benchmarks.soak import events
from benchmarks.soak.load import Request

GROWTH_LIMIT = 0.05
WINDOW = 0.1  # of the run: the samples a floor is the least of
IAM_PERIOD = (events.IAM_TOKEN_TTL - 1 - min(5.0, events.IAM_TOKEN_TTL / 4)) * 2 / 3
PERIODS = {"iam": IAM_PERIOD, "secret": float(events.SECRET_TTL)}
FETCHES_PER_ROTATION = 2  # the refused AWSCURRENT read with AWSPENDING, then AWSCURRENT again
LOST_COMMIT = "http 503 TransactionOutcomeUnknown"


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    evs = raw["events"]
    flip = next(e for e in evs if e["name"] == "flip")
    kills = {e["name"].removeprefix("kill_"): e for e in evs if e["name"].startswith("kill_")}
    windows: collections.Counter[tuple[str, str, str]] = collections.Counter()
    failed = []
    for r in raw["requests"]:
        if r.outcome != "ok":
            window = _window(r, flip, kills.get(r.app))
            windows[(r.app, r.outcome, window)] += 1
            failed.append({**dataclasses.asdict(r), "window": window})
    failures = [
        {"app": app, "kind": kind, "window": window, "count": n}
        for (app, kind, window), n in sorted(windows.items())
    ]
    return {
        "duration": raw["duration"],
        "requests": len(raw["requests"]),
        "acked_writes": raw["acked"],
        "lost_writes": len(raw["lost"]),
        "failures": failures,
        "failed_requests": failed,
        "failed_outside": sum(f["count"] for f in failures if f["window"] == "outside"),
        "failed_in_flip": sum(f["count"] for f in failures if f["window"] == "flip"),
        "failed_in_flip_not_commit": sum(
            f["count"] for f in failures if f["window"] == "flip" and f["kind"] != LOST_COMMIT
        ),
        "failed_on_killed_worker": sum(f["count"] for f in failures if f["window"] == "kill"),
        "events": evs,
        "respawned": {app: bool(e["respawned"]) for app, e in kills.items()},
        "workers": _growth(raw),
        "fetches": _fetches(raw["snapshots"]["end"], evs, raw["duration"]),
        "exits": {app: {str(pid): s for pid, s in e.items()} for app, e in raw["exits"].items()},
        "slowest_exit_s": max(
            (math.inf if s is None else s for e in raw["exits"].values() for s in e.values()),
            default=math.inf,
        ),
        "series": series(raw["requests"], raw["duration"]),
        "samples": raw["samples"],
        "snapshots": raw["snapshots"],
    }


def _window(r: Request, flip: dict[str, Any], kill: dict[str, Any] | None) -> str:
    if r.start <= flip["end"] and r.end >= flip["at"]:
        return "flip"
    no_answer = not r.outcome.startswith("http ")
    if kill is not None and no_answer and r.start <= kill["killed_at"] <= r.end:
        return "kill"
    return "outside"


def _growth(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Each worker alive at the reference sample and at the end: the figures then, and the
    growth of their floors, the least value over a window of samples (a tenth of the run)
    from the reference and up to the end. A leak raises the floor; a descriptor open for
    a moment does not. The descriptors judged are ``fds_rest``: less the requests being
    served (as many as the load has in flight) and the pools' database connections
    (which follow the load up to the pool's size, and are replaced after a failover)."""
    ref_at = next(e["at"] for e in raw["events"] if e["name"] == "reference")
    duration, width = raw["duration"], raw["duration"] * WINDOW
    rows = []
    for app, workers in raw["snapshots"]["end"].items():
        for pid, end in workers.items():
            ref = raw["snapshots"]["reference"][app].get(pid)
            if ref is None or ref["proc"] is None or end["proc"] is None:
                continue
            mine = [x for x in raw["samples"] if x["app"] == app and x["pid"] == int(pid)]
            first = [x for x in mine if ref_at <= x["at"] <= ref_at + width]
            last = [x for x in mine if duration - width <= x["at"]]
            row: dict[str, Any] = {"app": app, "pid": int(pid)}
            for figure in ("fds", "fds_http", "fds_db"):
                row[figure] = (ref["proc"][figure], end["proc"][figure])
            for figure in ("threads", "fds_rest", "rss_kib"):
                row[figure] = (ref["proc"][figure], end["proc"][figure])
                floor = [
                    min([x[figure] for x in first] or [ref["proc"][figure]]),
                    min([x[figure] for x in last] or [end["proc"][figure]]),
                ]
                row[f"{figure}_floor"] = floor
                row[f"{figure}_growth"] = (floor[1] - floor[0]) / floor[0]
            rows.append(row)
    return rows


def _fetches(
    end: dict[str, Any], evs: list[dict[str, Any]], duration: float
) -> list[dict[str, Any]]:
    """Credential fetches per worker, per minute of its life, against the bound its
    refresh period allows (the first fetch, one per period, two per rotation it saw)."""
    rotations = [e["at"] for e in evs if e["name"] == "rotate_set"]
    rows = []
    for app, workers in end.items():
        for pid, w in workers.items():
            stats, age = w["stats"], w["age_s"]
            if stats is None or age is None:
                rows.append({"app": app, "pid": int(pid), "missing": True})
                continue
            born = duration - age
            seen = sum(1 for t in rotations if t >= born)
            for kind, count in sorted(stats["fetches"].items()):
                forced = FETCHES_PER_ROTATION * seen if kind == "secret" else 0
                bound = 1 + math.ceil(age / PERIODS[kind]) + forced
                rows.append(
                    {
                        "app": app,
                        "pid": int(pid),
                        "kind": kind,
                        "fetches": count,
                        "failed": stats["failed"].get(kind, 0),
                        "age_s": age,
                        "per_minute": count * 60 / age,
                        "period_s": PERIODS[kind],
                        "rotations_seen": seen if kind == "secret" else None,
                        "bound": bound,
                    }
                )
    return rows


def series(requests: list[Request], duration: float) -> dict[str, Any]:
    """Requests and errors ended in each second, per app."""
    seconds = math.ceil(duration) + 1
    out: dict[str, Any] = {"second": list(range(seconds))}
    for app in sorted({r.app for r in requests}):
        done, failed = [0] * seconds, [0] * seconds
        for r in requests:
            if r.app == app and 0 <= r.end < seconds:
                done[int(r.end)] += 1
                failed[int(r.end)] += r.outcome != "ok"
        out[app] = {"requests": done, "errors": failed}
    return out


def verdicts(s: dict[str, Any]) -> dict[str, bool]:
    """Each property the issue asks for, met or not (RSS is judged by the caller)."""
    return {
        "no failure outside the flip window": s["failed_outside"] == 0,
        "in the flip window, only lost COMMITs": s["failed_in_flip_not_commit"] == 0,
        "no acknowledged write lost": s["lost_writes"] == 0,
        "killed workers respawned": all(s["respawned"].values()) and len(s["respawned"]) == 2,
        "threads flat (< 5 %)": all(w["threads_growth"] < GROWTH_LIMIT for w in s["workers"]),
        "fds flat (< 5 %), less requests in flight and pooled connections": all(
            w["fds_rest_growth"] < GROWTH_LIMIT for w in s["workers"]
        ),
        "RSS flat (< 5 %)": all(w["rss_kib_growth"] < GROWTH_LIMIT for w in s["workers"]),
        "fetches within the refresh periods": all(
            not f.get("missing") and f["fetches"] <= f["bound"] for f in s["fetches"]
        ),
        "every worker exits within 5 s of SIGTERM": s["slowest_exit_s"] <= 5.0,
    }
