"""The differential comparison (pure): what counts as a difference, what is deliberate."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coldmig_fsm import load_scenario, run_scenario
from coldmig_fsm.harness.conformance import DELIBERATE, Difference, compare, run_nova

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return run_scenario(load_scenario(SCENARIOS / "migrate-confirm.yaml"))


def test_identical_outputs_agree(ours: dict[str, Any]) -> None:
    assert compare(ours, copy.deepcopy(ours)) == []


def _changed(ours: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    nova = copy.deepcopy(ours)
    change(nova)
    return nova


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(output: dict[str, Any]) -> None:
        *parents, last = path
        target: Any = output
        for key in parents:
            target = target[key]
        target[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "path", "ours_value", "nova_value"),
    [
        pytest.param(_set(("steps", 1, "ok"), False), "steps[1].ok", True, False, id="step-ok"),
        pytest.param(
            _set(("steps", 0, "error"), {"type": "NoValidHost"}),
            "steps[0].error",
            None,
            "NoValidHost",
            id="step-error",
        ),
        pytest.param(
            _set(("instances", "vm1", "task_state"), "resize_finish"),
            "instances.vm1.task_state",
            None,
            "resize_finish",
            id="instance",
        ),
        pytest.param(
            _set(("migrations", 0, "status"), "finished"),
            "migrations[0].status",
            "confirmed",
            "finished",
            id="migration",
        ),
        pytest.param(_set(("usage", "host-a", "vcpus"), 1), "usage.host-a.vcpus", 0, 1, id="usage"),
        pytest.param(
            _set(("domains", "host-a"), ["vm1"]), "domains.host-a", [], ["vm1"], id="domains"
        ),
        pytest.param(
            _set(("driver_calls", 2, "host"), "host-b"),
            "driver_calls[2][0]",
            "host-a",
            "host-b",
            id="driver-call",
        ),
        pytest.param(
            _set(("notifications", 0), "scheduler.select_destinations.end"),
            "notifications[0]",
            "scheduler.select_destinations.start",
            "scheduler.select_destinations.end",
            id="notification",
        ),
        pytest.param(
            _set(("actions", "vm1", 1, "action"), "revertResize"),
            "actions.vm1[1].action",
            "confirmResize",
            "revertResize",
            id="action",
        ),
    ],
)
def test_one_real_difference_in_each_compared_key(
    ours: dict[str, Any],
    change: Callable[[dict[str, Any]], None],
    path: str,
    ours_value: Any,
    nova_value: Any,
) -> None:
    assert compare(ours, _changed(ours, change)) == [Difference(path, ours_value, nova_value, None)]


def test_a_list_of_another_length_is_one_difference_at_the_list(ours: dict[str, Any]) -> None:
    calls = [[c["host"], c["call"], c["instance"]] for c in ours["driver_calls"]]
    nova = _changed(ours, lambda out: out["driver_calls"].pop())
    assert compare(ours, nova) == [Difference("driver_calls", calls, calls[:-1], None)]


def test_a_missing_instance_is_a_difference(ours: dict[str, Any]) -> None:
    nova = _changed(ours, lambda out: out["instances"].pop("vm1"))
    [difference] = compare(ours, nova)
    assert (difference.path, difference.nova, difference.deliberate) == (
        "instances.vm1",
        None,
        None,
    )


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
    nova = copy.deepcopy(mine)
    nova["instances"]["vm1"]["power_state"] = "running"
    assert {(d.path, d.deliberate) for d in compare(mine, nova)} == {
        ("instances.vm1.power_state", "paused-power-state"),
    }


def _deleted_after_failed_move(ours: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    mine = copy.deepcopy(ours)
    mine["steps"].append({"op": "delete", "instance": "vm1", "ok": True, "error": None})
    mine["instances"]["vm1"]["vm_state"] = "deleted"
    mine["domains"] = {"host-a": [], "host-b": []}
    destroy = [{"host": h, "call": "destroy", "instance": "vm1"} for h in ("host-b", "host-a")]
    nova = copy.deepcopy(mine)
    nova["domains"]["host-a"] = ["vm1"]  # Nova leaks the source guest
    nova["driver_calls"] = [*mine["driver_calls"], destroy[0]]
    mine["driver_calls"] = [*mine["driver_calls"], *destroy]
    return mine, nova


def test_delete_that_cleans_every_host_is_deliberate(ours: dict[str, Any]) -> None:
    mine, nova = _deleted_after_failed_move(ours)
    assert {(d.path, d.deliberate) for d in compare(mine, nova)} == {
        ("domains.host-a", "delete-cleans-every-host"),
        ("driver_calls", "delete-cleans-every-host"),
    }


def test_delete_cleans_every_host_covers_only_deleted_instances(ours: dict[str, Any]) -> None:
    mine, nova = _deleted_after_failed_move(ours)
    mine["instances"]["vm1"]["vm_state"] = "error"  # not deleted: a real difference
    nova["instances"]["vm1"]["vm_state"] = "error"
    assert {(d.path, d.deliberate) for d in compare(mine, nova)} == {
        ("domains.host-a", None),
        ("driver_calls", None),
    }
    mine, nova = _deleted_after_failed_move(ours)
    mine["driver_calls"][-1]["call"] = "power_off"  # an extra call that is not a destroy
    assert ("driver_calls", None) in {(d.path, d.deliberate) for d in compare(mine, nova)}


def _with_step(output: dict[str, Any], op: str) -> dict[str, Any]:
    changed = copy.deepcopy(output)
    changed["steps"].append({"op": op, "instance": None, "ok": True, "error": None})
    return changed


def test_an_injected_driver_error_class_is_deliberate(ours: dict[str, Any]) -> None:
    mine = copy.deepcopy(ours)
    mine["steps"][0].update(ok=False, error={"type": "HypervisorError"})
    nova = copy.deepcopy(mine)
    nova["steps"][0]["error"] = {"type": "InjectedDriverError"}
    assert compare(mine, nova) == [
        Difference(
            "steps[0].error", "HypervisorError", "InjectedDriverError", "injected-error-class"
        )
    ]
    mine["steps"][0]["error"] = {"type": "NoValidHost"}  # another failure: a real difference
    assert compare(mine, nova) == [
        Difference("steps[0].error", "NoValidHost", "InjectedDriverError", None)
    ]


def test_notification_order_is_deliberate_only_for_a_periodic_run(ours: dict[str, Any]) -> None:
    mine = _with_step(ours, "advance_clock")
    nova = copy.deepcopy(mine)
    nova["notifications"] = list(reversed(mine["notifications"]))
    assert compare(mine, nova) == [
        Difference(
            "notifications",
            mine["notifications"],
            nova["notifications"],
            "concurrent-notification-order",
        )
    ]
    # Without a periodic run, the same order is a real difference, at each place.
    reordered = _changed(ours, lambda out: out["notifications"].reverse())
    found = compare(ours, reordered)
    assert {d.deliberate for d in found} == {None}
    assert [d.path for d in found] == [
        f"notifications[{i}]" for i in range(len(ours["notifications"])) if i != 5
    ]  # 11 notifications: the middle one stays in place
    # With one, a notification missing is a real difference: not the same set.
    nova["notifications"] = mine["notifications"][:-1]
    assert compare(mine, nova) == [
        Difference("notifications", mine["notifications"], nova["notifications"], None)
    ]


def test_what_nova_cannot_express_is_deliberate(ours: dict[str, Any]) -> None:
    nova = _changed(ours, _set(("instances", "vm1", "host"), "host-a"))
    assert [d.deliberate for d in compare(ours, nova)] == [None]
    nova["nova_adapter"] = {"unsupported": "abort_migration"}
    # A rule that covers a whole key reports it once, at the key.
    assert [(d.path, d.deliberate) for d in compare(ours, nova)] == [
        ("instances", "not-expressible-on-nova")
    ]


def test_recovery_on_restart_is_deliberate(ours: dict[str, Any]) -> None:
    nova = _changed(ours, _set(("instances", "vm1", "task_state"), "resize_migrated"))
    assert [d.deliberate for d in compare(ours, nova)] == [None]
    mine = _with_step(ours, "restart_compute")
    nova = _changed(mine, _set(("instances", "vm1", "task_state"), "resize_migrated"))
    assert [(d.path, d.deliberate) for d in compare(mine, nova)] == [
        ("instances", "recovery-never-stuck")
    ]


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
