"""The differential comparison (pure): what counts as a difference, what is deliberate."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from coldmig_fsm import load_scenario, run_scenario
from coldmig_fsm.conformance import DELIBERATE, compare, run_nova

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return run_scenario(load_scenario(SCENARIOS / "migrate-confirm.yaml"))


def test_identical_outputs_agree(ours: dict[str, Any]) -> None:
    assert compare(ours, copy.deepcopy(ours)) == []


def test_nova_extras_are_ignored(ours: dict[str, Any]) -> None:
    nova = copy.deepcopy(ours)
    nova["steps"][0]["http_status"] = 202
    nova["migrations"][0]["deleted"] = True
    nova["instances"]["vm1"]["locked_by"] = None
    nova["nova_adapter"] = {"seconds": 1.0}
    assert compare(ours, nova) == []


def test_real_differences_are_reported_with_their_path(ours: dict[str, Any]) -> None:
    nova = copy.deepcopy(ours)
    nova["instances"]["vm1"]["host"] = "host-a"
    nova["notifications"] = nova["notifications"][:-1]
    nova["actions"]["vm1"][0]["events"][1]["result"] = "Error"
    found = {d.path: (d.ours, d.nova, d.deliberate) for d in compare(ours, nova)}
    assert found["instances.vm1.host"] == ("host-b", "host-a", None)
    assert found["actions.vm1[0].events[1].result"] == ("Success", "Error", None)
    assert found["notifications"][2] is None
    assert len(found) == 3


def test_deliberate_deviations_are_marked(ours: dict[str, Any]) -> None:
    mine = copy.deepcopy(ours)
    mine["instances"]["vm1"]["vm_state"] = "paused"
    mine["instances"]["vm1"]["power_state"] = "paused"
    mine["steps"][0] = {"op": "resize", "ok": False, "error": {"type": "CannotResizeDisk"}}
    nova = copy.deepcopy(mine)
    nova["instances"]["vm1"]["power_state"] = "running"
    nova["steps"][0]["error"]["type"] = "FlavorDiskSmallerThanMinDisk"
    assert {(d.path, d.deliberate) for d in compare(mine, nova)} == {
        ("instances.vm1.power_state", "paused-power-state"),
        ("steps[0].error", "resize-smaller-disk"),
    }


def test_every_deliberate_deviation_is_documented() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "conformance.md").read_text()
    for deviation in DELIBERATE:
        assert f"`{deviation.name}`" in text


def test_recorded_nova_results_agree_with_ours() -> None:
    # Results recorded from Nova 34 by conformance/nova_adapter.py (see its README); the
    # live comparison runs in `make test` through `make conformance`.
    results = Path(__file__).resolve().parents[1] / "conformance" / "probe-results"
    probes = Path(__file__).resolve().parents[1] / "conformance" / "probe-scenarios"
    checked = 0
    for scenario in sorted(probes.glob("*.yaml")):
        nova = json.loads((results / f"{scenario.stem}.json").read_text())
        mine = run_scenario(load_scenario(scenario))
        real = [d.describe() for d in compare(mine, nova) if d.deliberate is None]
        assert real == [], scenario.name
        checked += 1
    assert checked == 27


def test_missing_nova_environment_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make conformance-env"):
        run_nova([SCENARIOS / "migrate-confirm.yaml"], tmp_path / "no-python")
