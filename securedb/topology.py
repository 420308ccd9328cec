"""Aurora topology: a cluster's instances, which one is the writer, where to connect.

For a cluster endpoint (``name.cluster-ID.REGION.rds.amazonaws.com``, or its reader
endpoint ``name.cluster-ro-ID...``) securedb asks the server for the cluster's instances
(`Answer`) and connects to their instance endpoints (``SERVER_ID.ID.REGION...``) instead of
waiting for the cluster name's DNS to follow a failover. One `Topology` per cluster is
shared by every connector of it, as credential caches are.

A topology is input from the network: `snapshot` accepts only an answer with exactly one
writer and instance identifiers that RDS could have made, so every host securedb derives
from it is a name inside the cluster's own domain, which TLS then verifies.

The routing decisions are generators (`writer_plan`, `reader_plan`) that yield the
`Visit` to make next and receive what came of it, so the sync and async connectors share
them and differ only in I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import re
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any

from securedb import _state
from securedb.errors import NoReaderError, TopologyError

__all__ = ["Answer", "Cluster", "Topology", "reader_plan", "shared", "snapshot", "writer_plan"]

CLUSTER_HOST = re.compile(
    r"^[a-z][a-z0-9-]*\.cluster-(?P<ro>ro-)?"
    r"(?P<domain>[a-z0-9]+\.[a-z]{2}(?:-[a-z]+)+-\d+\.rds\.amazonaws\.com(?:\.cn)?)\.?$"
)
# An RDS DB instance identifier: a letter, then letters, digits and single hyphens; at
# most 63 characters; no hyphen at the end. Nothing else can be a label of the domain.
INSTANCE_ID = re.compile(r"^[a-z](?:-?[a-z0-9]){0,62}$")
FRESH_FOR = 5.0  # seconds a topology is trusted without reading it again
SEARCH_PAUSE = 0.1  # between rounds of asking the instances for a new writer


@dataclasses.dataclass(frozen=True, slots=True)
class Cluster:
    """An Aurora cluster's instance domain, as its cluster endpoint names it."""

    domain: str  # "ID.REGION.rds.amazonaws.com"
    port: int
    reader_endpoint: bool  # the URL named the cluster's reader endpoint (cluster-ro)

    @classmethod
    def of(cls, host: str | None, port: int | None) -> Cluster | None:
        match = CLUSTER_HOST.match(host.lower()) if host else None
        if match is None or port is None:
            return None
        return cls(match["domain"], port, bool(match["ro"]))

    def instance_host(self, server_id: str) -> str:
        return f"{server_id}.{self.domain}"


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One instance as the server reported it; its values are not yet trusted."""

    server_id: Any
    is_writer: Any
    lag_ms: Any
    updated: Any  # a datetime, or None


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What one instance answered: the cluster's rows, its own identifier, and whether it
    takes writes (not in recovery / not read-only)."""

    rows: Sequence[Row]
    here: Any
    writable: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Instance:
    server_id: str
    host: str
    lag: float  # seconds behind the writer: its replica lag, or how old its row is
    updated: datetime.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """A validated answer."""

    writer: Instance
    readers: tuple[Instance, ...]
    here: str  # the instance that answered
    writable: bool  # ... and whether it takes writes

    def instance(self, server_id: str) -> Instance | None:
        return next((i for i in (self.writer, *self.readers) if i.server_id == server_id), None)

    @property
    def on_writer(self) -> bool:
        """The answering instance is the writer, and says so itself."""
        return self.writable and self.here == self.writer.server_id


def snapshot(answer: Answer, cluster: Cluster, where: str) -> Snapshot:
    """`answer` checked: one writer, instance identifiers only, no repeats.

    Raises:
        TopologyError: naming what is wrong and `where` it came from; nothing in the
            answer is connected to.
    """
    ids = [_instance_id(row.server_id, where) for row in answer.rows]
    if len(set(ids)) != len(ids):
        raise _lie(where, "names an instance twice")
    writers = [i for i, row in zip(ids, answer.rows, strict=True) if row.is_writer is True]
    if not writers:
        raise _lie(where, "names no writer" if ids else "is empty")
    if len(writers) > 1:
        raise _lie(where, f"names {len(writers)} writers ({', '.join(writers)})")
    rows = dict(zip(ids, answer.rows, strict=True))
    newest = rows[writers[0]].updated
    instances = {i: _instance(i, row, newest, cluster) for i, row in rows.items()}
    here = _instance_id(answer.here, where)
    if here not in instances:
        raise _lie(where, f"does not list the instance that answered ({here})")
    return Snapshot(
        writer=instances[writers[0]],
        readers=tuple(v for k, v in instances.items() if k != writers[0]),
        here=here,
        writable=answer.writable is True,
    )


def _instance_id(value: Any, where: str) -> str:
    if isinstance(value, str) and INSTANCE_ID.match(value.lower()):
        return value.lower()
    shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
    raise _lie(
        where,
        f"names an instance {shown} that is not an RDS instance identifier (so its endpoint "
        "would not be in the cluster's domain)",
    )


def _instance(server_id: str, row: Row, newest: Any, cluster: Cluster) -> Instance:
    lag = row.lag_ms / 1000 if isinstance(row.lag_ms, (int, float)) and row.lag_ms >= 0 else 0.0
    updated = row.updated if isinstance(row.updated, datetime.datetime) else None
    if updated is not None and isinstance(newest, datetime.datetime):
        try:
            lag = max(lag, (newest - updated).total_seconds())
        except TypeError:  # one aware, one naive: the server mixed them up
            lag = float("inf")
    elif updated is None:
        lag = float("inf")  # never updated: nothing says it is current
    return Instance(server_id, cluster.instance_host(server_id), float(lag), updated)


def _lie(where: str, what: str) -> TopologyError:
    return TopologyError(
        f"the Aurora topology from {where} {what}: securedb connects to no instance it "
        "names; check the cluster, or pass topology='off' to connect through the endpoint's "
        "DNS name only"
    )


class Topology:
    """What securedb knows of one cluster, shared by every connector of it.

    ``suspect`` is set after a failover-class error: the writer must be found again
    before a connection goes to it. A reader that failed is ``down`` until a later answer
    shows its row updated after the failure.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.lock = threading.Lock()
        self.current: Snapshot | None = None
        self.read_at = 0.0
        self.suspect = False
        self.dns_only = False  # the server has no topology view: not Aurora
        self.down: dict[str, datetime.datetime | None] = {}
        self.turn = random.randrange(1 << 16)  # noqa: S311 (processes start at different readers)
        _state.track(self)

    def after_fork(self) -> None:
        """A lock held by another thread at fork would never be released in the child."""
        self.lock = threading.Lock()

    def learn(self, snap: Snapshot) -> None:
        with self.lock:
            self.current, self.read_at = snap, time.monotonic()
            if snap.on_writer:
                self.suspect = False
            for server_id, failed_at in list(self.down.items()):
                seen = snap.instance(server_id)
                if seen is not None and _after(seen.updated, failed_at):
                    del self.down[server_id]

    def failed_over(self) -> None:
        """A failover-class error was seen: find the writer again before trusting it."""
        self.suspect = True

    def mark_down(self, server_id: str) -> None:
        with self.lock:
            seen = self.current.instance(server_id) if self.current else None
            self.down[server_id] = seen.updated if seen else None
            self.read_at = 0.0  # read again on the next connection

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self.read_at < FRESH_FOR

    def healthy_readers(self, max_lag: float) -> list[Instance]:
        snap = self.current
        if snap is None:
            return []
        return [r for r in snap.readers if r.lag <= max_lag and r.server_id not in self.down]

    def next_reader(self, max_lag: float, skip: set[str]) -> Instance | None:
        """The healthy readers in turn, so connections spread evenly."""
        readers = [r for r in self.healthy_readers(max_lag) if r.server_id not in skip]
        if not readers:
            return None
        with self.lock:
            self.turn += 1
            return readers[self.turn % len(readers)]

    def why_no_reader(self, max_lag: float) -> str:
        snap = self.current
        if snap is None or not snap.readers:
            return "the cluster has no reader instance"
        reasons = [
            f"{r.server_id} is unreachable"
            if r.server_id in self.down
            else f"{r.server_id} lags by {r.lag:.1f} s"
            for r in snap.readers
        ]
        return f"{'; '.join(reasons)} (max_lag={max_lag:g})"


def _after(updated: datetime.datetime | None, failed_at: datetime.datetime | None) -> bool:
    if updated is None:
        return False
    try:
        return failed_at is None or updated > failed_at
    except TypeError:
        return False


def shared(engine: str, cluster: Cluster) -> Topology:
    """The one `Topology` of this cluster, kept while a connector holds it."""
    return _state.topologies.get((engine, cluster.domain, cluster.port), lambda: Topology(cluster))


# The steps of a plan, and what the connector sends back.


@dataclasses.dataclass(frozen=True, slots=True)
class Visit:
    """Connect to `host` (an instance, or the endpoint's own name when `server_id` is None),
    and read the topology on the connection if `read`."""

    host: str
    server_id: str | None
    read: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


@dataclasses.dataclass(slots=True)
class Reached:
    conn: Any
    snapshot: Snapshot | None  # when the visit read the topology
    error: TopologyError | None = None  # ... and the answer was not to be trusted


@dataclasses.dataclass(slots=True)
class Missed:
    error: BaseException  # clean: safe to raise
    failover: bool  # a failover-class failure (lost, refused): another instance may do


Step = Visit | Pause
Outcome = Reached | Missed | None
Plan = Generator[Step, Outcome, Any]


def writer_plan(topology: Topology, endpoint: str, window: float) -> Plan:
    """Reach the writer: the known one, else whichever instance the others name.

    `endpoint` is the URL's host, asked once while no topology is known. After a failover
    the instances are asked in turn, for up to `window` seconds, until one of them is the
    writer and says so itself; the cluster name's DNS is not waited for.
    """
    if topology.current is None:
        conn, first = _trusted((yield Visit(endpoint, None, True)))
        if first is None:
            return conn
        topology.learn(first)
        if first.on_writer:
            return conn
    deadline = time.monotonic() + window
    last: BaseException | None = None
    while True:
        known = topology.current
        assert known is not None
        if not topology.suspect:
            outcome = yield Visit(known.writer.host, known.writer.server_id, not topology.fresh)
            if isinstance(outcome, Reached) and outcome.error is None:
                if outcome.snapshot is None:
                    return outcome.conn
                topology.learn(outcome.snapshot)
                if outcome.snapshot.on_writer:
                    return outcome.conn
            last = _settle(outcome, last)
            topology.failed_over()
        conn, last = yield from _search(topology, known, last)
        if conn is not None:
            return conn
        if time.monotonic() >= deadline:
            raise last if last is not None else _lie(endpoint, "names no writer that answers")
        yield Pause(SEARCH_PAUSE)


def _trusted(outcome: Outcome) -> tuple[Any, Snapshot | None]:
    """The first answer of all: a failure or a lie is raised, there is nothing to fall
    back on. No snapshot: the server has no topology (the connection goes by DNS)."""
    if isinstance(outcome, Missed):
        raise outcome.error
    assert isinstance(outcome, Reached)
    if outcome.error is not None:
        raise outcome.error
    return outcome.conn, outcome.snapshot


def _search(
    topology: Topology, known: Snapshot, last: BaseException | None
) -> Generator[Step, Outcome, tuple[Any, BaseException | None]]:
    """One round: ask each reader, least lagging first, then the lost writer, which is the
    writer now, and go to the one it names. A connection to the writer, or None and the
    last error."""
    asked: set[str] = set()
    for instance in [*sorted(known.readers, key=lambda i: i.lag), known.writer]:
        outcome = yield Visit(instance.host, instance.server_id, True)
        if not isinstance(outcome, Reached) or outcome.snapshot is None:
            last = _settle(outcome, last)
            continue
        snap = outcome.snapshot
        topology.learn(snap)
        if snap.on_writer:
            return outcome.conn, last
        if snap.writer.server_id in asked or snap.writer.server_id == snap.here:
            continue  # named itself without taking writes: not promoted yet
        asked.add(snap.writer.server_id)
        named = yield Visit(snap.writer.host, snap.writer.server_id, True)
        if isinstance(named, Reached) and named.snapshot is not None:
            topology.learn(named.snapshot)
            if named.snapshot.on_writer:
                return named.conn, last
        last = _settle(named, last)
    return None, last


def _settle(outcome: Outcome, last: BaseException | None) -> BaseException | None:
    """The error to raise if the search ends now; a failure no other instance can mend
    (TLS, a refused credential) is raised at once."""
    if isinstance(outcome, Missed):
        if not outcome.failover:
            raise outcome.error
        return outcome.error
    if isinstance(outcome, Reached) and outcome.error is not None:
        return outcome.error
    return last


def reader_plan(
    topology: Topology, endpoint: str, max_lag: float, fallback: bool, window: float
) -> Plan:
    """Reach a healthy reader, each in turn; a reader that fails is skipped.

    With none healthy: the writer if `fallback`, else `NoReaderError`.
    """
    if topology.current is None:
        conn, first = _trusted((yield Visit(endpoint, None, True)))
        if first is None:
            return conn
        topology.learn(first)
        if any(r.server_id == first.here for r in topology.healthy_readers(max_lag)):
            return conn
    skip: set[str] = set()
    refreshed = False
    while True:
        reader = topology.next_reader(max_lag, skip)
        if reader is None:
            if not refreshed and topology.current is not None:
                refreshed = True
                skip.clear()
                writer = topology.current.writer
                outcome = yield Visit(writer.host, writer.server_id, True)
                if isinstance(outcome, Reached) and outcome.snapshot is not None:
                    topology.learn(outcome.snapshot)
                    if (
                        fallback
                        and outcome.snapshot.on_writer
                        and not topology.healthy_readers(max_lag)
                    ):
                        return outcome.conn
                continue
            if fallback:
                return (yield from writer_plan(topology, endpoint, window))
            raise NoReaderError(
                f"no healthy reader in the Aurora cluster {topology.cluster.domain}: "
                f"{topology.why_no_reader(max_lag)}; raise max_lag=, wait for a reader, or "
                "pass reader_fallback=True to use the writer"
            )
        outcome = yield Visit(reader.host, reader.server_id, not topology.fresh)
        if isinstance(outcome, Missed):
            if not outcome.failover:
                raise outcome.error
            topology.mark_down(reader.server_id)
            skip.add(reader.server_id)
            continue
        assert outcome is not None
        if outcome.snapshot is not None:
            topology.learn(outcome.snapshot)
        healthy = {r.server_id for r in topology.healthy_readers(max_lag)}
        if outcome.error is None and reader.server_id in healthy:
            return outcome.conn
        skip.add(reader.server_id)
