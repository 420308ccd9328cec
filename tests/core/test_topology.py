"""Aurora topology decisions as pure logic: what an answer must be, and where plans go.

The plans are driven here by a scripted cluster: each host answers as the test says, and
the test sees every host a plan visits, in order. The bed's emulated cluster tests the
same plans through real connections (tests/test_aurora.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from securedb import topology
from securedb.errors import ConfigError, NoReaderError, TopologyError
from securedb.topology import (
    Answer,
    Cluster,
    Missed,
    Outcome,
    Pause,
    Reached,
    Row,
    Topology,
    Visit,
    reader_plan,
    snapshot,
    writer_plan,
)

DOMAIN = "xyz789.us-east-1.rds.amazonaws.com"
ENDPOINT = f"app.cluster-{DOMAIN}"
CLUSTER = Cluster(DOMAIN, 5432, reader_endpoint=False)
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


def host(server_id: str) -> str:
    return f"{server_id}.{DOMAIN}"


def answer(writer: str | None, here: str, readers: dict[str, float], writable: bool) -> Answer:
    rows = [Row(writer, True, 0, NOW)] if writer else []
    rows += [Row(r, False, lag * 1000, NOW) for r, lag in readers.items()]
    return Answer(rows, here, writable)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (ENDPOINT, Cluster(DOMAIN, 5432, False)),
        (f"app.cluster-ro-{DOMAIN}", Cluster(DOMAIN, 5432, True)),
        (f"App.Cluster-RO-{DOMAIN.upper()}", Cluster(DOMAIN, 5432, True)),
        (
            "app.cluster-abc.cn-north-1.rds.amazonaws.com.cn",
            Cluster("abc.cn-north-1.rds.amazonaws.com.cn", 5432, False),
        ),
        (f"app.cluster-custom-{DOMAIN}", None),  # a custom endpoint: a subset, not routed
        (f"app.{DOMAIN}", None),  # an instance
        (f"p.proxy-{DOMAIN}", None),
        (f"app.cluster-{DOMAIN}.evil.example", None),
        ("localhost", None),
    ],
)
def test_cluster_endpoints(name: str, expected: Cluster | None) -> None:
    assert Cluster.of(name, 5432) == expected


def test_a_true_answer() -> None:
    snap = snapshot(answer("w-1", "r-2", {"r-2": 0.2, "r-3": 7}, False), CLUSTER, ENDPOINT)
    assert (snap.writer.server_id, snap.writer.host) == ("w-1", host("w-1"))
    assert [(r.server_id, r.lag) for r in snap.readers] == [("r-2", 0.2), ("r-3", 7.0)]
    assert (snap.here, snap.writable, snap.on_writer) == ("r-2", False, False)


def test_identifiers_are_lowercased_as_rds_stores_them() -> None:
    snap = snapshot(answer("W-1", "W-1", {}, True), CLUSTER, ENDPOINT)
    assert (snap.writer.host, snap.on_writer) == (host("w-1"), True)


def test_a_row_not_updated_for_a_while_lags_by_that_while() -> None:
    old = NOW - datetime.timedelta(seconds=42)
    rows = [Row("w-1", True, 0, NOW), Row("r-2", False, 10, old), Row("r-3", False, 0, None)]
    snap = snapshot(Answer(rows, "w-1", True), CLUSTER, ENDPOINT)
    assert [r.lag for r in snap.readers] == [42.0, float("inf")]


@pytest.mark.parametrize(
    ("rows", "here", "says"),
    [
        ([], None, "is empty"),
        ([Row("r-2", False, 0, NOW)], "r-2", "names no writer"),
        ([Row("w-1", True, 0, NOW), Row("w-2", True, 0, NOW)], "w-1", "names 2 writers"),
        ([Row("w-1", True, 0, NOW), Row("w-1", False, 0, NOW)], "w-1", "twice"),
        ([Row("evil.attacker.example", True, 0, NOW)], "w-1", "'evil.attacker.example'"),
        ([Row("w-1", True, 0, NOW), Row("r/../x", False, 0, NOW)], "w-1", "'r/../x'"),
        ([Row("w-1", True, 0, NOW), Row("r-", False, 0, NOW)], "w-1", "'r-'"),
        ([Row("w-1", True, 0, NOW), Row("a--b", False, 0, NOW)], "w-1", "'a--b'"),
        ([Row("w-1", True, 0, NOW), Row("a" * 64, False, 0, NOW)], "w-1", "identifier"),
        ([Row(b"w-1", True, 0, NOW)], "w-1", "bytes"),
        ([Row("w-1", 1, 0, NOW)], "w-1", "names no writer"),  # only True is a writer
        ([Row("w-1", True, 0, NOW)], "w-9", "does not list the instance that answered"),
    ],
)
def test_an_answer_that_lies_is_an_error(rows: list[Row], here: str | None, says: str) -> None:
    with pytest.raises(TopologyError) as caught:
        snapshot(Answer(rows, here, True), CLUSTER, ENDPOINT)
    assert says in str(caught.value)
    assert ENDPOINT in str(caught.value)
    assert "topology='off'" in str(caught.value)


World = dict[str, Callable[[Visit], Outcome]]


def drive(plan: topology.Plan, world: World) -> tuple[Any, list[str]]:
    """Run `plan` against scripted hosts: what it returned, and the hosts it visited."""
    visited: list[str] = []
    outcome: Outcome = None
    try:
        while True:
            step = plan.send(outcome)
            if isinstance(step, Pause):
                outcome = None
                continue
            visited.append(step.host)
            outcome = world[step.host](step)
    except StopIteration as done:
        return done.value, visited


def instance(answer_of: Callable[[], Answer]) -> Callable[[Visit], Outcome]:
    """A host that answers the topology query with whatever `answer_of` says now."""

    def visit(step: Visit) -> Outcome:
        if not step.read:
            return Reached(step.host, None)
        try:
            return Reached(step.host, snapshot(answer_of(), CLUSTER, step.host))
        except TopologyError as exc:
            return Reached(step.host, None, exc)

    return visit


def down(step: Visit) -> Outcome:
    return Missed(ConnectionRefusedError(step.host), failover=True)


def cluster_before_failover() -> World:
    view = {"r-2": 0.1, "r-3": 0.3}
    return {
        ENDPOINT: instance(lambda: answer("w-1", "w-1", view, True)),
        host("w-1"): instance(lambda: answer("w-1", "w-1", view, True)),
        host("r-2"): instance(lambda: answer("w-1", "r-2", view, False)),
        host("r-3"): instance(lambda: answer("w-1", "r-3", view, False)),
    }


def test_the_first_connection_reads_the_topology_through_the_endpoint() -> None:
    cluster = Topology(CLUSTER)
    conn, visited = drive(writer_plan(cluster, ENDPOINT, 5), cluster_before_failover())
    assert (conn, visited) == (ENDPOINT, [ENDPOINT])
    assert cluster.current is not None
    assert cluster.current.writer.server_id == "w-1"
    # The next one goes straight to the writer's instance endpoint, without a query.
    conn, visited = drive(writer_plan(cluster, ENDPOINT, 5), cluster_before_failover())
    assert visited == [host("w-1")]


def test_an_endpoint_that_lands_on_a_reader_leads_to_the_writer() -> None:
    world = cluster_before_failover()
    world[ENDPOINT] = world[host("r-3")]  # DNS still names the old writer, now a reader
    conn, visited = drive(writer_plan(Topology(CLUSTER), ENDPOINT, 5), world)
    assert (conn, visited) == (host("w-1"), [ENDPOINT, host("w-1")])


def test_after_failover_the_instances_are_asked_until_one_is_the_writer() -> None:
    cluster = Topology(CLUSTER)
    world = cluster_before_failover()
    drive(writer_plan(cluster, ENDPOINT, 5), world)
    promoted = {"done": False}
    view_after = {"w-1": 99.0, "r-3": 0.2}

    def r2() -> Answer:
        if not promoted["done"]:
            promoted["done"] = True  # the first ask comes before the promotion
            return answer("w-1", "r-2", {"r-2": 0.1, "r-3": 0.3}, False)
        return answer("r-2", "r-2", view_after, True)

    world[host("w-1")] = down
    world[host("r-2")] = instance(r2)
    world[ENDPOINT] = down  # DNS has not moved: never asked
    cluster.failed_over()
    conn, visited = drive(writer_plan(cluster, ENDPOINT, 5), world)
    assert conn == host("r-2")
    # readers first (least lag first), the old writer last; then again until promoted
    assert visited[:4] == [host("r-2"), host("w-1"), host("r-3"), host("w-1")]
    assert visited[-1] == host("r-2")
    assert ENDPOINT not in visited
    assert not cluster.suspect


def test_a_lost_writer_found_on_connect_starts_the_search_at_once() -> None:
    cluster = Topology(CLUSTER)
    world = cluster_before_failover()
    drive(writer_plan(cluster, ENDPOINT, 5), world)
    world[host("w-1")] = down
    world[host("r-3")] = instance(lambda: answer("r-3", "r-3", {"w-1": 50, "r-2": 0.1}, True))
    world[host("r-2")] = instance(lambda: answer("r-3", "r-2", {"w-1": 50, "r-2": 0.1}, False))
    conn, visited = drive(writer_plan(cluster, ENDPOINT, 5), world)
    assert conn == host("r-3")
    assert visited == [host("w-1"), host("r-2"), host("r-3")]


def test_a_search_that_finds_no_writer_raises_the_last_error() -> None:
    cluster = Topology(CLUSTER)
    world = cluster_before_failover()
    drive(writer_plan(cluster, ENDPOINT, 5), world)
    for name in ("w-1", "r-2", "r-3"):
        world[host(name)] = down
    cluster.failed_over()
    with pytest.raises(ConnectionRefusedError):
        drive(writer_plan(cluster, ENDPOINT, 0), world)


def test_a_lie_in_the_first_answer_is_raised_and_nothing_it_names_is_visited() -> None:
    world = cluster_before_failover()
    world[ENDPOINT] = instance(lambda: answer("evil.attacker.example", "w-1", {}, True))
    with pytest.raises(TopologyError, match=r"evil\.attacker\.example"):
        drive(writer_plan(Topology(CLUSTER), ENDPOINT, 5), world)


def test_a_failure_no_instance_can_mend_is_raised_at_once() -> None:
    cluster = Topology(CLUSTER)
    world = cluster_before_failover()
    drive(writer_plan(cluster, ENDPOINT, 5), world)
    world[host("w-1")] = lambda step: Missed(PermissionError("TLS"), failover=False)
    with pytest.raises(PermissionError):
        drive(writer_plan(cluster, ENDPOINT, 5), world)


def reader_world(lags: dict[str, float]) -> World:
    world = cluster_before_failover()
    for name in ("w-1", "r-2", "r-3"):
        world[host(name)] = instance(
            lambda name=name: answer("w-1", name, lags, name == "w-1")  # type: ignore[misc]
        )
    world[ENDPOINT] = world[host("w-1")]
    return world


def test_readers_take_turns() -> None:
    cluster = Topology(CLUSTER)
    world = reader_world({"r-2": 0.1, "r-3": 0.2})
    chosen = [drive(reader_plan(cluster, ENDPOINT, 5, False, 5), world)[0] for _ in range(100)]
    assert {chosen.count(host("r-2")), chosen.count(host("r-3"))} == {50}


def test_a_reader_that_fails_is_skipped_until_the_topology_shows_it_again() -> None:
    cluster = Topology(CLUSTER)
    world = reader_world({"r-2": 0.1, "r-3": 0.2})
    drive(reader_plan(cluster, ENDPOINT, 5, False, 5), world)
    healthy_r3 = world[host("r-3")]
    world[host("r-3")] = down
    chosen = [drive(reader_plan(cluster, ENDPOINT, 5, False, 5), world)[0] for _ in range(6)]
    assert chosen == [host("r-2")] * 6
    world[host("r-3")] = healthy_r3
    later = NOW + datetime.timedelta(seconds=5)
    rows = [Row("w-1", True, 0, later), Row("r-2", False, 0, later), Row("r-3", False, 0, later)]
    cluster.learn(snapshot(Answer(rows, "w-1", True), CLUSTER, ENDPOINT))
    chosen = [drive(reader_plan(cluster, ENDPOINT, 5, False, 5), world)[0] for _ in range(6)]
    assert chosen.count(host("r-3")) == 3


def test_a_lagging_reader_gets_no_connection() -> None:
    cluster = Topology(CLUSTER)
    world = reader_world({"r-2": 0.1, "r-3": 9})
    chosen = {drive(reader_plan(cluster, ENDPOINT, 5, False, 5), world)[0] for _ in range(10)}
    assert chosen == {host("r-2")}


def test_with_no_healthy_reader_an_error_or_the_writer() -> None:
    world = reader_world({"r-2": 8, "r-3": 9})
    with pytest.raises(NoReaderError, match=r"r-2 lags by 8\.0 s; r-3 lags by 9\.0 s"):
        drive(reader_plan(Topology(CLUSTER), ENDPOINT, 5, False, 5), world)
    conn, _ = drive(reader_plan(Topology(CLUSTER), ENDPOINT, 5, True, 5), world)
    assert conn == host("w-1")


def test_the_mysql_adapter_reads_truth_spelt_one_or_zero() -> None:
    from securedb.drivers import mysql

    rows = [("w-1", 1, 0.0, NOW, "r-2", 0), ("r-2", 0, 120.0, NOW, "r-2", 0)]
    read = mysql._answer(rows)
    assert read == Answer([Row("w-1", True, 0.0, NOW), Row("r-2", False, 120.0, NOW)], "r-2", False)
    assert snapshot(read, CLUSTER, ENDPOINT).readers[0].lag == 0.12
    assert mysql._answer([]) == Answer([], None, None)


def test_the_postgres_adapter_reads_its_row_shape() -> None:
    from securedb.drivers import postgres

    read = postgres.answer([("w-1", True, None, NOW, "w-1", True)])
    assert read == Answer([Row("w-1", True, None, NOW)], "w-1", True)
    assert snapshot(read, CLUSTER, ENDPOINT).on_writer


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"role": "reader", "topology": "off"}, "topology='off' rules out"),
        ({"role": "reader", "tunnel": "127.0.0.1:5433"}, "a tunnel rules out"),
        ({"role": "primary"}, "bad value for role: 'primary'"),
        ({"topology": "on"}, "bad value for topology: 'on'"),
        ({"max_lag": -1}, "bad value for max_lag"),
        ({"reader_fallback": "maybe"}, "bad value for reader_fallback: 'maybe'"),
    ],
)
def test_routing_options_are_checked(options: dict[str, Any], says: str) -> None:
    from securedb.config import Config

    with pytest.raises(ConfigError) as caught:
        Config.from_url(f"postgresql://u@{ENDPOINT}/db", auth="iam", **options)
    assert says in str(caught.value)


def test_routing_options_from_a_url_and_the_environment() -> None:
    from securedb.config import Config

    cfg = Config.from_url(
        f"postgresql://u@{ENDPOINT}/db?role=reader&reader_fallback=true&max_lag=2", auth="iam"
    )
    assert (cfg.wants_reader, cfg.reader_fallback, cfg.max_lag) == (True, True, 2.0)
    env = {
        "SECUREDB_URL": f"postgresql://u@{ENDPOINT}/db",
        "SECUREDB_AUTH": "iam",
        "SECUREDB_TOPOLOGY": "off",
    }
    assert Config.from_env(env).cluster is None
    assert Config.from_url(f"postgresql://u@app.cluster-ro-{DOMAIN}/db", auth="iam").wants_reader
    assert not Config.from_url(f"postgresql://u@{ENDPOINT}/db", auth="iam").wants_reader


def test_a_cluster_name_without_a_topology_goes_by_dns() -> None:
    """An RDS Multi-AZ DB cluster has `.cluster-` names too, and no aurora_replica_status()."""
    world: World = {ENDPOINT: lambda step: Reached("by dns", None)}
    for plan in (
        writer_plan(Topology(CLUSTER), ENDPOINT, 5),
        reader_plan(Topology(CLUSTER), ENDPOINT, 5, False, 5),
    ):
        assert drive(plan, world) == ("by dns", [ENDPOINT])
