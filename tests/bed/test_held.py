"""bed/held.py: the bed `make mutate` holds for all its sessions, and how the fixture finds it."""

from __future__ import annotations

import os
from types import TracebackType
from typing import ClassVar

import pytest

from bed import held


class FakeBed:
    """Stands in for `Bed`: records starts and stops, starts no server."""

    events: ClassVar[list[str]] = []

    def __enter__(self) -> FakeBed:
        self.events.append("start")
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.events.append("stop")


@pytest.fixture(autouse=True)
def no_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(held.ENV, raising=False)
    FakeBed.events = []


def test_nothing_is_borrowed_without_the_variable() -> None:
    assert held.borrowed() is None


def test_the_variable_without_a_held_bed_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(held.ENV, held.HELD)
    with pytest.raises(RuntimeError, match="holds no bed; it is set by `make mutate`"):
        held.borrowed()


def test_hold_lends_one_bed_and_stops_it_after() -> None:
    with held.hold(FakeBed) as bed:  # type: ignore[arg-type]
        assert os.environ[held.ENV] == held.HELD
        assert held.borrowed() is bed
        assert held.borrowed() is bed
        assert FakeBed.events == ["start"]
    assert FakeBed.events == ["start", "stop"]
    assert held.ENV not in os.environ
    assert held.borrowed() is None


def test_hold_restores_the_variable_and_stops_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(held.ENV, "something")
    with pytest.raises(LookupError), held.hold(FakeBed):  # type: ignore[arg-type]
        raise LookupError
    assert FakeBed.events == ["start", "stop"]
    assert os.environ[held.ENV] == "something"
