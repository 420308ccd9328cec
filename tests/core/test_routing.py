"""Running a topology plan's I/O (`securedb._routing`): what an unreadable topology comes to,
and closing what a plan opened. Pure logic, no bed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from securedb import _routing, errors
from securedb.config import Config
from securedb.drivers import Failure
from securedb.topology import Missed

CLUSTER = "orders.cluster-abc123.eu-west-2.rds.amazonaws.com"


class Driver:
    def __init__(self, failure: Failure | None) -> None:
        self.failure, self.asked = failure, list[BaseException]()

    def classify(self, exc: BaseException) -> Failure | None:
        self.asked.append(exc)
        return self.failure


def cfg() -> Config:
    return Config.from_url(f"postgresql://app@{CLUSTER}/app", auth="iam")


def test_a_lost_connection_while_reading_is_a_failover_miss() -> None:
    lost, driver = ConnectionError("gone"), Driver(Failure.FAILOVER)
    outcome = _routing.unread(lost, driver, cfg())  # type: ignore[arg-type]
    assert driver.asked == [lost]
    assert isinstance(outcome, Missed)
    assert outcome.failover is True
    assert type(outcome.error) is ConnectionError
    assert outcome.error.args == ("gone",)


@pytest.mark.parametrize("failure", [None, Failure.AUTH, Failure.READ_ONLY])
def test_any_other_failure_to_read_is_a_topology_error(failure: Failure | None) -> None:
    outcome = _routing.unread(LookupError("no such function"), Driver(failure), cfg())  # type: ignore[arg-type]
    assert isinstance(outcome, Missed)
    assert outcome.failover is False
    assert isinstance(outcome.error, errors.TopologyError)
    assert str(outcome.error) == (
        f"could not read the Aurora topology on app@{CLUSTER}:5432 (LookupError); pass "
        "topology='off' to connect through the endpoint's DNS name only"
    )
    assert (outcome.error.host, outcome.error.port) == (CLUSTER, 5432)


class Conn:
    def __init__(self, close: Any) -> None:
        self._close, self.closed = close, False

    def close(self) -> Any:
        self.closed = True
        return self._close()


async def closing() -> None:
    Closing.awaited = True


class Closing:
    awaited = False


def test_closing_quietly_awaits_an_async_close_and_swallows_errors() -> None:
    Closing.awaited = False
    asyncio.run(_routing.close_quietly_async(Conn(closing)))
    assert Closing.awaited
    plain = Conn(lambda: None)
    asyncio.run(_routing.close_quietly_async(plain))
    assert plain.closed

    def broken() -> None:
        raise OSError("already gone")

    asyncio.run(_routing.close_quietly_async(Conn(broken)))
    _routing.close_quietly(Conn(broken))
