"""The scenario format's model-checker steps: settle: false, invariants: true, deliver,
reconcile, race, a fault's instance, a lost message without a host."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldmig_fsm import Cloud, load_scenario, run_scenario
from coldmig_fsm.harness.scenario import parse_scenario
from tests.test_scenario_loading import CLOUD, problem

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            "  - {op: race, instance: vm1, first: {op: lock}, second: {op: stop}}\n",
            "steps[0].first.op, line 9: unknown operation to race 'lock'",
        ),
        (
            "  - {op: race, instance: vm1, first: {op: stop, instance: vm1}, second: {op: stop}}\n",
            "steps[0].first.instance, line 9: a raced request is on the race's instance",
        ),
        (
            "  - {op: race, instance: vm1, first: {op: resize}, second: {op: stop}}\n",
            "steps[0].first, line 9: missing key 'flavor'",
        ),
        (
            "  - {op: race, instance: vm1, first: stop, second: {op: stop}}\n",
            "steps[0].first, line 9: must be a mapping (a request: op and its keys), got 'stop'",
        ),
        (
            "  - {op: fault, call: destroy}\n",
            "steps[0], line 9: missing key 'host' (only a lost message may omit it)",
        ),
        (
            "  - {op: fault, host: host-a, call: destroy, instance: vm9}\n",
            "steps[0].instance, line 9: unknown instance 'vm9'",
        ),
        ("  - {op: deliver, times: 2}\n", "steps[0].times, line 9: unknown key 'times'"),
    ],
    ids=["race-lock", "race-instance", "race-missing", "race-not-mapping", "fault-host",
         "fault-instance", "deliver-times"],
)  # fmt: skip
def test_invalid_steps(tmp_path: Path, steps: str, expected: str) -> None:
    assert problem(tmp_path, CLOUD + "steps:\n" + steps).startswith(expected)


@pytest.mark.parametrize("key", ["settle", "invariants"])
def test_the_switches_are_booleans(tmp_path: Path, key: str) -> None:
    assert (
        problem(tmp_path, f"{key}: 1\n" + CLOUD) == f"{key}, line 1: must be true or false, got 1"
    )


def stepwise(steps: str, *, settle: bool = False) -> dict[str, object]:
    text = f"settle: {str(settle).lower()}\ninvariants: true\n{CLOUD}steps:\n{steps}"
    return run_scenario(parse_scenario(text.encode()))


def test_a_request_only_queues_until_delivered() -> None:
    output = stepwise("  - {op: migrate, instance: vm1}\n")
    assert output["instances"]["vm1"]["task_state"] == "resize_prep"  # type: ignore[index]
    assert output["violations"] == []  # not idle: the request may still be pending
    output = stepwise("  - {op: migrate, instance: vm1}\n" + "  - {op: deliver}\n" * 5)
    delivered = [s.get("delivered") for s in output["steps"]]  # type: ignore[attr-defined]
    assert delivered == [
        None,
        "migrate_server",
        "prep_resize",
        "resize_instance",
        "finish_resize",
        None,
    ]
    assert output["instances"]["vm1"]["vm_state"] == "resized"  # type: ignore[index]


def test_settled_steps_are_checked_too() -> None:
    output = stepwise("  - {op: migrate, instance: vm1}\n", settle=True)
    assert output["instances"]["vm1"]["vm_state"] == "resized"  # type: ignore[index]
    assert output["violations"] == []
    assert "violations" not in run_scenario(load_scenario(HERE / "scenarios" / "quota.yaml"))


def test_a_lost_message_then_reconcile_is_idle_again() -> None:
    output = stepwise(
        "  - {op: migrate, instance: vm1}\n"
        "  - {op: fault, call: migrate_server, mode: lose}\n"
        "  - {op: deliver}\n"
        "  - {op: reconcile}\n"
    )
    assert output["violations"] == []
    assert output["instances"]["vm1"]["task_state"] is None  # type: ignore[index]


def test_an_exception_out_of_a_step_is_its_error_and_a_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: Cloud) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Cloud, "reconcile", broken)
    output = stepwise("  - {op: reconcile}\n")
    assert output["steps"] == [
        {"op": "reconcile", "ok": False, "error": {"type": "RuntimeError", "message": "a bug"}}
    ]
    assert output["violations"] == ["step 1 (reconcile): `reconcile` raised RuntimeError: a bug"]


def test_a_race_the_second_loses() -> None:
    output = stepwise(
        "  - op: race\n"
        "    instance: vm1\n"
        "    first: {op: stop, as: owner}\n"
        "    second: {op: delete, as: owner}\n"
        "  - {op: deliver}\n"
    )
    assert output["steps"][0] == {  # type: ignore[index]
        "op": "race",
        "instance": "vm1",
        "first": "stop",
        "second": "delete",
        "ok": True,
        "error": None,
    }
    assert output["instances"]["vm1"]["vm_state"] == "stopped"  # type: ignore[index]
    assert output["violations"] == []
    refused = stepwise(
        "  - {op: race, instance: vm1, first: {op: confirm_resize}, second: {op: stop}}\n"
    )
    assert refused["steps"][0]["error"]["type"] == "InstanceInvalidState"  # type: ignore[index]
