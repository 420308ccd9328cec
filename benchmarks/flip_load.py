"""Load and bookkeeping for the Aurora writer flip (`cases_aurora`): the workers, what
the application saw of each unit of work, and one flip from rebuild to the rows check.

A unit of work inserts one row with a token of its own and reads
`aurora_db_instance_identifier()` in the same statement, then commits. Its fate is
acknowledged (with the instance and when), in doubt, or an error the application saw.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks import harness
from benchmarks.context import APP_PASSWORD, APP_USER, Ctx

WORKERS = 8
DNS_DELAY = 30.0  # seconds from the promotion to the cluster name's move
WINDOW = 45.0  # a flip ends when every worker committed on the new writer, or after this
NEW_WRITER = "aurora-pg-2"
OFF_RETRIES: dict[str, Any] = {"attempts": 100, "deadline": 60.0}  # long enough for the DNS
WRAPPER_TIMEOUT = 60  # failover_timeout_sec: longer than a flip, so the window decides
PAUSE = 0.1  # after an error reached the application, before the worker's next unit
RERUNS = 20  # a unit is re-run after FailoverSuccessError at most this often
JOIN = 90.0  # for the workers' last units after the flip ends
INSERT = (
    "INSERT INTO flip_rows (token, instance) "
    "SELECT %s, pg_catalog.aurora_db_instance_identifier() RETURNING instance"
)


@dataclasses.dataclass
class Ledger:
    """What the application saw of each unit of work during one flip."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    acked: dict[str, tuple[str, float, int]] = dataclasses.field(default_factory=dict)
    in_doubt: set[str] = dataclasses.field(default_factory=set)
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)
    retries: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def ack(self, worker: int, token: str, instance: str) -> None:
        with self.lock:
            self.acked[token] = (instance, time.monotonic(), worker)

    def doubt(self, token: str) -> None:
        with self.lock:
            self.in_doubt.add(token)

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        with self.lock:
            self.errors[name] += 1
            self.examples.setdefault(name, harness.failure(exc)[:200])

    def retried(self, details: Any) -> None:
        """securedb's `on_retry` hook: retries inside run_transaction, by kind."""
        with self.lock:
            self.retries[f"{details.failure} ({details.error})"] += 1

    def first_on(self, instance: str) -> dict[int, float]:
        """Each worker's first acknowledged commit on `instance`."""
        firsts: dict[int, float] = {}
        with self.lock:
            for where, when, worker in self.acked.values():
                if where == instance and when < firsts.get(worker, float("inf")):
                    firsts[worker] = when
        return firsts


Work = Callable[[int, Ledger, threading.Event], None]  # one worker's loop
Load = Callable[[], tuple[Work, Callable[[], None]]]  # the workers' loop, and the clean-up


def securedb_load(ctx: Ctx, cluster: Any, **options: Any) -> tuple[Work, Callable[[], None]]:
    """Workers calling `securedb.run_transaction` on one engine (pool_size=8)."""
    import sqlalchemy as sa

    import securedb
    from securedb.errors import TransactionOutcomeUnknown

    retry = OFF_RETRIES if options.get("topology") == "off" else {}
    url = cluster.url(APP_USER, APP_PASSWORD)
    eng = securedb.engine(url, ca_bundle=ctx.ca, pool_size=WORKERS, **options)
    statement = sa.text(INSERT.replace("%s", ":token"))

    def unit(token: str) -> Callable[[Any], str]:
        return lambda conn: str(conn.execute(statement, {"token": token}).scalar_one())

    def work(worker: int, ledger: Ledger, stop: threading.Event) -> None:
        while not stop.is_set():
            token = uuid.uuid4().hex
            try:
                instance = securedb.run_transaction(
                    eng, unit(token), on_retry=ledger.retried, **retry
                )
            except TransactionOutcomeUnknown:
                ledger.doubt(token)
            except Exception as exc:
                ledger.error(exc)
                stop.wait(PAUSE)
            else:
                ledger.ack(worker, token, instance)

    return work, eng.dispose


def wrapper_load(ctx: Ctx, cluster: Any) -> tuple[Work, Callable[[], None]]:
    """Workers with one wrapper connection each, handling its errors as its docs say."""
    import psycopg
    from aws_advanced_python_wrapper import AwsWrapperConnection, release_resources
    from aws_advanced_python_wrapper.errors import (
        FailoverSuccessError,
        TransactionResolutionUnknownError,
    )
    from aws_advanced_python_wrapper.utils import services_container

    from bed import aurora

    # The last flip's release_resources() emptied the wrapper's services container, which
    # is made again on first use without a lock: 8 threads connecting at once can see it
    # half made ("'NoneType' object has no attribute 'register_monitor_type'"). An
    # application releases once, at exit, so it is made again here, from one thread.
    services_container.get_monitor_service()

    settings = {
        "host": aurora.CLUSTER,
        "port": cluster.port,
        "dbname": "app",
        "user": APP_USER,
        "password": APP_PASSWORD,
        "sslmode": "verify-full",
        "sslrootcert": ctx.ca,
        "gssencmode": "disable",  # as securedb
        "connect_timeout": 5,  # securedb's default
        "plugins": "failover_v2",  # it finds the aurora-pg dialect by itself
        "cluster_instance_host_pattern": f"?.{aurora.DOMAIN}",
        "cluster_id": f"flip-{uuid.uuid4().hex[:8]}",  # no topology kept from an earlier flip
        "failover_timeout_sec": WRAPPER_TIMEOUT,
    }

    def unit(conn: Any, token: str) -> str:
        with conn.cursor() as cursor:
            cursor.execute(INSERT, (token,))
            instance = str(cursor.fetchone()[0])
        conn.commit()
        return instance

    def work(worker: int, ledger: Ledger, stop: threading.Event) -> None:
        conn = None
        while not stop.is_set():
            token = uuid.uuid4().hex
            for _ in range(RERUNS):
                try:
                    if conn is None:
                        conn = AwsWrapperConnection.connect(psycopg.Connection.connect, **settings)
                    instance = unit(conn, token)
                except FailoverSuccessError as exc:
                    ledger.error(exc)  # caught by the application, which runs the unit again
                    continue
                except TransactionResolutionUnknownError:
                    ledger.doubt(token)
                except Exception as exc:  # FailoverFailedError and the rest: a new connection
                    ledger.error(exc)
                    _closed(conn)
                    conn = None
                    stop.wait(PAUSE)
                else:
                    ledger.ack(worker, token, instance)
                break
        _closed(conn)

    return work, release_resources


def _closed(conn: Any) -> None:
    try:
        if conn is not None:
            conn.close()
    except Exception:  # noqa: S110 (a broken connection: nothing to do)
        pass


def flip(cluster: Any, load: Load) -> dict[str, Any]:
    """One writer flip under load on a freshly rebuilt cluster; what came of it."""
    from bed import aurora
    from securedb import _state

    cluster.rebuild()
    old = cluster.writer()
    cluster.nodes[old].psql(
        f"CREATE TABLE IF NOT EXISTS flip_rows (token text, instance text);"
        f"GRANT ALL ON flip_rows TO {APP_USER};",
        database="app",
    )
    ledger, stop = Ledger(), threading.Event()
    work, close = load()
    threads = [
        threading.Thread(target=work, args=(i, ledger, stop), name=f"flip-{i}", daemon=True)
        for i in range(WORKERS)
    ]
    try:
        for thread in threads:
            thread.start()
        if not _wait(lambda: len(ledger.first_on(old)) == WORKERS, time.monotonic() + 20):
            raise RuntimeError(f"the load did not start: {dict(ledger.errors)} {ledger.examples}")
        time.sleep(0.5)
        stopped = time.monotonic()
        promoted = cluster.fail_over(to=NEW_WRITER, dns_delay=DNS_DELAY)
        moved = _DnsWatch(aurora.CLUSTER, cluster.address(NEW_WRITER))
        _wait(lambda: moved() and len(ledger.first_on(NEW_WRITER)) == WORKERS, promoted + WINDOW)
    finally:
        stop.set()
        until = time.monotonic() + JOIN
        for thread in threads:
            thread.join(max(0.0, until - time.monotonic()))
        close()
        _state.reset()
    out = NEW_WRITER
    rows = collections.Counter(
        cluster.nodes[out].psql("SELECT token FROM flip_rows", "app").split()
    )
    firsts = ledger.first_on(out)
    return {
        "promotion_s": promoted - stopped,
        "dns_moved_s": moved.at - promoted if moved.at is not None else None,
        "first_commit_s": min(firsts.values()) - promoted if firsts else None,
        "all_workers_s": max(firsts.values()) - promoted if len(firsts) == WORKERS else None,
        "acknowledged": len(ledger.acked),
        "errors": dict(ledger.errors),
        "in_doubt": len(ledger.in_doubt),
        "in_doubt_committed": sum(1 for token in ledger.in_doubt if rows[token]),
        "lost": sum(1 for token in ledger.acked if not rows[token]),
        "duplicated": sum(1 for n in rows.values() if n > 1),
        "retries": dict(ledger.retries),
        "examples": ledger.examples,
        "stuck_workers": sum(thread.is_alive() for thread in threads),
    }


class _DnsWatch:
    """Notes when `name` first resolves to `address`; always true, so it can sit in a wait."""

    def __init__(self, name: str, address: str) -> None:
        self.name, self.address = name, address
        self.at: float | None = None

    def __call__(self) -> bool:
        if self.at is None:
            with contextlib.suppress(OSError):
                if socket.gethostbyname(self.name) == self.address:
                    self.at = time.monotonic()
        return True


def _wait(done: Callable[[], bool], until: float) -> bool:
    while not done():
        if time.monotonic() >= until:
            return False
        time.sleep(0.05)
    return True
