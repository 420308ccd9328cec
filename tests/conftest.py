"""Session-wide fixtures: the local RDS-like bed, started once.

Outside CI a machine that cannot run the bed skips the tests that need it; under
`CI=true` a missing server is a failure, and so is any skipped test.

The test process resolves names through a private /etc/hosts (bed/names.py), entered at
configure time while it still has a single thread: the emulated Aurora cluster moves
its DNS names there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bed import held, names, pam, procs
from bed.bed import Bed, can_start
from bed.procs import BedError

if TYPE_CHECKING:
    from bed.aurora import AuroraCluster

IN_CI = os.environ.get("CI") == "true"
HOSTS = pytest.StashKey[names.Hosts | str]()  # the private /etc/hosts, or why there is none


def pytest_configure(config: pytest.Config) -> None:
    """Give the session a private /etc/hosts while it has one thread (bed/names.py), for
    the emulated Aurora cluster's names; the machine's own file is never touched."""
    reason = names.can_enter()
    if reason is None:
        path = Path(tempfile.mkdtemp(prefix="securedb-hosts-")) / "hosts"
        try:
            config.stash[HOSTS] = names.enter_private_hosts(path)
            return
        except BedError as exc:
            shutil.rmtree(path.parent, ignore_errors=True)
            reason = str(exc)
    config.stash[HOSTS] = reason


def pytest_unconfigure(config: pytest.Config) -> None:
    hosts = config.stash.get(HOSTS, None)
    if isinstance(hosts, names.Hosts):
        hosts.close()
        hosts.path.parent.rmdir()


@pytest.fixture(scope="session")
def bed(request: pytest.FixtureRequest) -> Iterator[Bed]:
    shared = held.borrowed()  # `make mutate`: one bed for all its sessions (bed/held.py)
    if shared is not None:
        yield shared
        return
    reason = can_start()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true and the bed cannot start: {reason}")
        pytest.skip(reason)
    started = Bed().start()
    request.config.stash[BED_START] = started.start_seconds
    yield started
    pids = [p.proc.pid for p in _parts(started) if p.proc is not None]
    started.stop()
    leftovers = [pid for pid in pids if procs.alive(pid)]
    assert not leftovers, f"bed processes left running: {leftovers}"
    assert not any(path.exists() for path in started.pam_files), "PAM files left in /etc/pam.d"
    assert not (pam.SHARED / f"{started.run_id}.json").exists()
    assert not started.root.exists(), f"bed directory left: {started.root}"


@pytest.fixture(scope="session")
def aurora(bed: Bed, pytestconfig: pytest.Config) -> AuroraCluster:
    """The emulated Aurora cluster (bed/aurora.py), started by the first test that asks."""
    hosts = pytestconfig.stash[HOSTS]
    if isinstance(hosts, str):
        if IN_CI:
            pytest.fail(f"CI=true and the Aurora cluster cannot start: {hosts}")
        pytest.skip(hosts)
    return bed.aurora(hosts)


@pytest.fixture
def aurora_fresh(aurora: AuroraCluster) -> Iterator[AuroraCluster]:
    """The Aurora cluster, rebuilt after the test if the test changed it (a failover...)."""
    yield aurora
    aurora.rebuild()


@pytest.fixture(autouse=True)
def fresh_connectors() -> Iterator[None]:
    """Each test starts without the connectors (and credentials) an earlier one left."""
    from securedb import _state

    _state.reset()
    yield
    _state.reset()


@pytest.fixture
def aws_env(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """boto3 pointed at the bed's moto server, which starts empty for each test."""
    bed.moto.reset()
    env = bed.aws_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    return env


BED_START = pytest.StashKey[float]()


def _parts(bed: Bed) -> list:  # type: ignore[type-arg]
    servers = [bed.primary, bed.replica, bed.mariadb, bed.proxy_password, bed.proxy_iam, bed.moto]
    return servers + (list(bed.aurora_cluster.nodes.values()) if bed.aurora_cluster else [])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if IN_CI and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true: {report.longrepr}"
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if BED_START in config.stash:
        terminalreporter.write_line(f"bed started in {config.stash[BED_START]:.2f} s")
