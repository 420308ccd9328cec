"""One soak run on a started bed: both app servers under load while the schedule's
faults happen, then the servers are stopped with SIGTERM and every acknowledged write
is looked up on the final writer.

`run` returns the raw material (the requests, the events, the workers' /proc samples
and /stats, their exit times, the writes lost); `analysis.summarize` judges it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bed import procs
from bed.bed import Bed
from benchmarks.soak import apps, events
from benchmarks.soak.fleet import Fleet
from benchmarks.soak.load import Load, Target
from securedb.config import ENV_VARS

CLIENTS = 8  # per app: 16 requests in flight in all
RESPAWN_TIMEOUT = 60.0
# Settings of this process that are not the apps': securedb's, and AWS's beyond the bed's.
SCRUBBED = {
    "SECUREDB_URL",
    *ENV_VARS,
    *("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"),
}


def run(bed: Bed, duration: float, workdir: Path) -> dict[str, Any]:
    """Soak both apps for `duration` seconds on `bed`; logs go to `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(bed)
    servers: dict[str, apps.AppServer] = {}
    try:
        base = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        base.update(bed.aws_env())
        for app, env in fleet.env().items():
            make = apps.django if app == "django" else apps.fastapi
            servers[app] = make({**base, **env}, procs.free_port(), workdir / f"{app}.log")
        for server in servers.values():
            server.start()
        t0 = time.monotonic()
        db_ports = {fleet.writer_fwd.port, fleet.reader_fwd.port}
        with _sampling(servers, events.sample_every(duration), t0, db_ports) as samples:
            raw = _drive(fleet, servers, duration, t0, db_ports)
        raw["samples"] = samples
        raw["masters"] = {app: server.pid for app, server in servers.items()}
        raw["exits"] = {app: server.terminate() for app, server in servers.items()}
        notes = fleet.notes()
        acked = [r for r in raw["requests"] if r.note_id is not None]
        raw["lost"] = [r.note_id for r in acked if notes.get(r.note_id) != r.body]
        raw["acked"] = len(acked)
        return raw
    finally:
        for server in servers.values():
            server.stop()
        fleet.restore()


def _drive(
    fleet: Fleet,
    servers: dict[str, apps.AppServer],
    duration: float,
    t0: float,
    db_ports: set[int],
) -> dict[str, Any]:
    """The load, and the schedule's actions at their times; what each did and when."""
    targets = [
        Target("django", servers["django"].url, "/notes", "/notes/latest"),
        Target("fastapi", servers["fastapi"].url, "/notes/retried", "/notes/latest"),
    ]
    done: list[dict[str, Any]] = []
    snapshots: dict[str, Any] = {}
    load = Load(targets, CLIENTS, t0).start()
    watchers: list[threading.Thread] = []
    try:
        for action in events.schedule(duration):
            _sleep_until(t0 + action.at)
            started = time.monotonic() - t0
            detail = _act(action.name, fleet, servers, snapshots, watchers, db_ports, t0)
            detail.update(name=action.name, at=started, end=time.monotonic() - t0)
            done.append(detail)  # a kill's detail is completed later by its watcher
        _sleep_until(t0 + duration)
        snapshots["end"] = _snapshot(servers, db_ports)
    finally:
        requests = load.stop()
        for watcher in watchers:
            watcher.join()
    return {"duration": duration, "events": done, "snapshots": snapshots, "requests": requests}


def _act(
    name: str,
    fleet: Fleet,
    servers: dict[str, apps.AppServer],
    snapshots: dict[str, Any],
    watchers: list[threading.Thread],
    db_ports: set[int],
    t0: float,
) -> dict[str, Any]:
    if name.startswith("kill_"):
        return _kill(servers[name.removeprefix("kill_")], watchers, t0)
    if name == "reference":
        snapshots["reference"] = _snapshot(servers, db_ports)
        return {}
    action: Callable[[], None] = getattr(fleet, name)
    action()
    return {}


def _kill(server: apps.AppServer, watchers: list[threading.Thread], t0: float) -> dict[str, Any]:
    """SIGKILL one worker; a thread fills in when the server has replaced it.

    ``killed_at`` is taken once the signal is sent, not when the action began: a request
    that started in between may have reached the victim.
    """
    before = set(server.workers())
    victim = server.kill_worker()
    killed = time.monotonic()
    detail: dict[str, Any] = {
        "victim": victim,
        "killed_at": killed - t0,
        "respawned": [],
        "respawn_s": None,
    }

    def watch() -> None:
        while time.monotonic() - killed < RESPAWN_TIMEOUT:
            now = set(server.workers())
            if len(now) == len(before) and victim not in now:
                detail["respawned"] = sorted(now - before)
                detail["respawn_s"] = time.monotonic() - killed
                return
            time.sleep(0.05)

    watchers.append(threading.Thread(target=watch, daemon=True, name="soak-respawn"))
    watchers[-1].start()
    return detail


def _snapshot(servers: dict[str, apps.AppServer], db_ports: set[int]) -> dict[str, Any]:
    """Per app and live worker: /proc figures, age and /stats."""
    out: dict[str, Any] = {}
    for app, server in servers.items():
        pids = set(server.workers())
        answers = apps.stats(server.url, pids)
        out[app] = {
            str(pid): {
                "proc": apps.sample(pid, server.port, db_ports),
                "descriptors": apps.descriptors(pid),
                "age_s": apps.age(pid),
                "stats": answers.get(pid),
            }
            for pid in sorted(pids)
        }
    return out


@contextlib.contextmanager
def _sampling(
    servers: dict[str, apps.AppServer], every: float, t0: float, db_ports: set[int]
) -> Iterator[list[dict[str, Any]]]:
    """/proc samples of every worker every `every` seconds, in a thread, while inside."""
    samples: list[dict[str, Any]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            at = time.monotonic() - t0
            for app, server in servers.items():
                for pid in server.workers():
                    figures = apps.sample(pid, server.port, db_ports)
                    if figures is not None:
                        samples.append({"at": at, "app": app, "pid": pid, **figures})

    thread = threading.Thread(target=sample, daemon=True, name="soak-sampler")
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
