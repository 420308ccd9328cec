"""The benchmark harness runs every case once, with tiny counts, so it cannot rot.

No timing is asserted: only that each case ran, every contender produced samples (or,
for a peer, said why it could not), and the outputs were written. Cases whose peers are
not importable are left out (benchmarks/requirements.txt installs them). That includes
the async cases and the event-loop lag cases, whose lag is reported, never asserted.
The Aurora writer flip runs in a test of its own: it needs the session's private
/etc/hosts and takes a minute or two.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bed.bed import Bed
from benchmarks import harness, report, run
from benchmarks.harness import QUICK

if TYPE_CHECKING:
    from bed.aurora import AuroraCluster


@pytest.fixture(autouse=True)
def _close_xray_socket() -> Iterator[None]:
    """The AWS wrapper imports aws_xray_sdk, whose recorder opens a UDP socket at import
    and never closes it: under warnings-as-errors its ResourceWarning at exit is noise."""
    yield
    xray = sys.modules.get("aws_xray_sdk.core")
    sock = getattr(getattr(getattr(xray, "xray_recorder", None), "emitter", None), "_socket", None)
    if sock is not None:
        sock.close()


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.bed
@pytest.mark.slow
def test_every_case_runs_once(bed: Bed, aws_env: dict[str, str], tmp_path: Path) -> None:
    # The Aurora flip needs this process's private /etc/hosts: test_aurora_flip_runs_once.
    cases = [c for c in run.CASES if c.id != run.AURORA and all(importable(m) for m in c.requires)]
    assert cases, "no benchmark case has its peers installed"

    results = run.run_cases(bed, QUICK, cases)

    assert list(results["cases"]) == [c.id for c in cases]
    assert results["machine"]["cpu_count"]
    assert results["packages"]["securedb"]
    for case_id, case in results["cases"].items():
        assert "error" not in case, f"{case_id}: {case.get('error')}"
        assert isinstance(case["met"], bool), case_id
        assert case["contenders"], case_id
        for contender in case["contenders"]:
            who = f"{case_id}: {contender['name']}"
            assert contender["unavailable"] is None, f"{who}: {contender['unavailable']}"
            assert contender["n"] > 0, who
            assert contender["median"] > 0, who

    written = report.write(results, tmp_path, plots=importable("matplotlib"))
    names = {path.name for path in written}
    assert {"results.json", "README.md"} <= names
    if importable("matplotlib"):
        assert {f"{c.id}.png" for c in cases} <= names
    assert json.loads((tmp_path / "results.json").read_text())["cases"].keys() == {
        c.id for c in cases
    }
    markdown = (tmp_path / "README.md").read_text()
    for case in results["cases"].values():
        assert case["title"] in markdown
    assert str(bed.root) not in markdown, "a machine path leaked into the report"


@pytest.mark.bed
@pytest.mark.slow
def test_aurora_flip_runs_once(
    bed: Bed, aurora: AuroraCluster, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """One writer flip per contender on the emulated cluster, in the session's private
    /etc/hosts; that each ran and was reported, not how fast it recovered."""
    pytest.importorskip("aws_advanced_python_wrapper")
    case = next(c for c in run.CASES if c.id == run.AURORA)

    results = run.run_cases(bed, QUICK, [case], hosts=aurora.hosts)

    flip = results["cases"][run.AURORA]
    assert "error" not in flip, flip.get("error")
    assert isinstance(flip["met"], bool)
    for contender in flip["contenders"]:
        assert contender["unavailable"] is None, f"{contender['name']}: {contender['unavailable']}"
        assert len(flip["extra"]["flips"][contender["name"]]) == QUICK.flips
    markdown = report.markdown(results, {})
    assert "What the application saw, over all flips" in markdown
    assert str(bed.root) not in markdown, "a machine path leaked into the report"


def results_of(run_name: str, *case_ids: str) -> dict[str, Any]:
    rows = harness.results([harness.Contender("x", samples=[1.0, 2.0, 3.0])])
    case = {"target": "t", "verdict": "v", "met": True, "unit": "ns", "contenders": rows}
    return {
        "date": run_name,
        "scale": {"name": "full"},
        "duration_seconds": 1.0,
        "machine": {"platform": "p", "cpu_count": 2, "cpu": "c", "python": "3"},
        "packages": {"securedb": run_name},
        "cases": {i: {**case, "title": f"{i} of {run_name}", "method": "m"} for i in case_ids},
    }


def test_a_case_run_is_merged_into_the_earlier_results(tmp_path: Path) -> None:
    """`--case` replaces the cases it ran; the others, and their plots, stay as they were."""
    pytest.importorskip("matplotlib")
    old = results_of("old", "per_query", "storm")
    for case_id in old["cases"]:
        (tmp_path / f"{case_id}.png").write_bytes(b"old plot")
    new = results_of("new", "async_per_query", "per_query")

    merged = run.merge(old, new)
    run.write_merged(merged, tmp_path, list(new["cases"]))

    assert list(merged["cases"]) == ["per_query", "storm", "async_per_query"]  # CASES order
    assert merged["cases"]["storm"] == old["cases"]["storm"]
    assert merged["cases"]["per_query"]["title"] == "per_query of new"
    assert "Run on new with `--case`" in merged["cases"]["per_query"]["method"]
    assert merged["date"] == "old"
    assert (tmp_path / "storm.png").read_bytes() == b"old plot"
    assert (tmp_path / "per_query.png").read_bytes() != b"old plot"
    assert json.loads((tmp_path / "results.json").read_text()) == merged
    markdown = (tmp_path / "README.md").read_text()
    for case_id, case in merged["cases"].items():
        assert case["title"] in markdown
        assert f"]({case_id}.png)" in markdown
