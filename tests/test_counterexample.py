"""Counterexamples become scenarios (``coldmig verify --emit-scenario``).

* every mutant of ``tests/test_mutants.py``: its counterexample, written as a scenario,
  fails (its violation listed) while the mutant is in, and passes on the shipped code;
* a liveness counterexample ends with ``settle_all``: it fails while nothing can settle
  and passes once everything does;
* each kind of action round-trips: the scenario's cloud ends in the same abstract state,
  with the same driver calls, as the trace applied by the explorer;
* a start a scenario cannot describe, or no counterexample, is refused.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from coldmig_fsm import Cloud, CloudConfig, FakeFault, FaultMode, Outcome, VmState
from coldmig_fsm.harness import scenario as scenario_module
from coldmig_fsm.harness.scenario import match_expectations, parse_scenario, run_scenario
from coldmig_fsm.roles import services
from coldmig_fsm.verification.counterexample import to_scenario
from coldmig_fsm.verification.explorer import Action, abstract, apply
from coldmig_fsm.verification.model_check import KNOWN_ISSUES, Bounds, CheckResult, initial_cloud
from coldmig_fsm.verification.model_check import model_check as check
from coldmig_fsm.verification.settling import settle_all, settled, unsettled
from tests.test_mutants import MUTANTS


def default_cloud() -> Cloud:
    return initial_cloud(2, 3)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_scenario_fails_on_the_mutant_and_passes_on_the_shipped_code(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    factory = MUTANTS[name].inject(monkeypatch)
    result = check(factory, ignore=KNOWN_ISSUES)
    assert result.counterexample is not None
    text = to_scenario(result, factory)
    scenario = parse_scenario(text.encode(), name)
    assert (scenario.settle, scenario.check_invariants) == (False, True)
    assert scenario.expect == {"violations": []}

    mutated = run_scenario(scenario, machine=factory().runtime.machine)
    assert match_expectations(scenario.expect, mutated) != []
    # The violation the checker reported, at the scenario's last step.
    found = mutated["violations"]
    assert any(v.endswith(result.violations[0]) for v in found), found
    assert found[0].startswith(f"step {len(scenario.steps)} (")

    monkeypatch.undo()
    shipped = run_scenario(scenario)
    assert match_expectations(scenario.expect, shipped) == []
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "coldmig_fsm", "scenario", "run", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_liveness_counterexample_ends_with_settle_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The liveness mutant of tests/test_model_check_engine.py: a restarted compute service
    # keeps its down mark, so what its crash left never settles.
    monkeypatch.setattr(services, "mark_up", lambda runtime, host: None)

    def factory() -> Cloud:
        return initial_cloud(1, 2)

    result = check(factory, Bounds(operations=1))
    assert result.failed == "liveness" and result.counterexample is not None
    text = to_scenario(result, factory)
    assert "# A liveness counterexample" in text
    scenario = parse_scenario(text.encode(), "liveness")
    assert scenario.steps[-1] == {"op": "settle_all"}
    assert scenario.expect == {"violations": []}

    mutated = run_scenario(scenario, machine=factory().runtime.machine)
    assert mutated["steps"][-1]["settled"] is False
    last = f"step {len(scenario.steps)} (settle_all): not settled by settle_all: pending ["
    assert [v for v in mutated["violations"] if v.startswith(last)] != [], mutated["violations"]
    assert match_expectations(scenario.expect, mutated) != []

    monkeypatch.undo()
    shipped = run_scenario(scenario)
    assert shipped["steps"][-1]["settled"] is True
    assert match_expectations(scenario.expect, shipped) == []
    assert {i["task_state"] for i in shipped["instances"].values()} == {None}


def test_settle_all_settles_what_a_crash_left() -> None:
    cloud = initial_cloud(1, 2)
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "migrate_disk_and_power_off", mode=FaultMode.CRASH))
    move = cloud.migrate("vm1")
    assert move.wait().outcome is Outcome.PENDING
    assert not settled(cloud) and not cloud.is_up("host-a")
    assert settle_all(cloud) is True
    assert cloud.is_up("host-a")
    assert move.result is not None
    assert (move.result.outcome, move.result.error_type) == (Outcome.ROLLED_BACK, "MoveInterrupted")
    vm = cloud.instance("vm1")
    assert (vm.vm_state, vm.task_state, vm.host) == (VmState.ACTIVE, None, "host-a")


def test_settle_all_stops_when_a_round_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "mark_up", lambda runtime, host: None)
    cloud = initial_cloud(1, 2)
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "migrate_disk_and_power_off", mode=FaultMode.CRASH))
    cloud.migrate("vm1")
    cloud.run()
    restarts: list[str] = []
    original = Cloud.restart_compute

    def restart(cloud: Cloud, host: str) -> list[Any]:
        restarts.append(host)
        return original(cloud, host)

    monkeypatch.setattr(Cloud, "restart_compute", restart)
    assert settle_all(cloud) is False
    assert restarts == ["host-a"]  # one round: it changed nothing, so no second one
    assert unsettled(cloud).startswith("pending [")


# --- each kind of action ------------------------------------------------------------------

MIGRATE_VM1 = (Action("migrate", "vm1"), Action("step"), Action("step"))

TRACES = {
    "requests": (
        Action("migrate", "vm1", "host-c"),
        *[Action("step")] * 4,
        Action("race", "vm1", "confirm_resize", "revert_resize"),
        Action("step"),
        Action("resize", "vm2", "m1.small"),
        Action("lock", "vm1"),
        Action("unlock", "vm1"),
        Action("stop", "vm1"),
        *[Action("step")] * 4,
    ),
    "race with a resize": (
        Action("race", "vm1", "migrate", "resize"),
        *[Action("step")] * 4,
    ),
    "raise": (
        *MIGRATE_VM1,
        Action("step", fault=("host-a", "migrate_disk_and_power_off", "raise")),
    ),
    "rollback": (
        *MIGRATE_VM1,
        Action("step", fault=("host-a", "migrate_disk_and_power_off", "rollback")),
    ),
    "hang": (*MIGRATE_VM1, Action("step", fault=("host-a", "migrate_disk_and_power_off", "hang"))),
    "crash and restart": (
        *MIGRATE_VM1,
        Action("step", fault=("host-a", "migrate_disk_and_power_off", "crash")),
        Action("restart_compute", arg="host-a"),
        Action("step"),
    ),
    "lost to the conductor, reconcile": (
        Action("migrate", "vm1"),
        Action("step", fault="lose"),
        Action("reconcile"),
    ),
    "lost to a compute, reconcile with a fault": (
        *MIGRATE_VM1,
        Action("step", fault="lose"),
        Action("reconcile", fault=("host-a", "finish_revert_migration", "raise")),
    ),
    "clock with a fault": (
        *MIGRATE_VM1,
        Action("step"),
        Action("step"),
        Action("advance_clock", arg="60", fault=("host-a", "confirm_migration", "raise")),
    ),
}


@pytest.mark.parametrize("kind", sorted(TRACES))
def test_each_kind_of_action_round_trips(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = TRACES[kind]
    explored = default_cloud()
    for action in trace:
        apply(explored, action)
    built: list[Cloud] = []
    build = scenario_module.build_cloud

    def keep(parsed: scenario_module.Scenario, **options: object) -> Cloud:
        built.append(build(parsed, **options))  # type: ignore[arg-type]
        return built[-1]

    monkeypatch.setattr(scenario_module, "build_cloud", keep)
    result = CheckResult(1, 1, 0.0, len(trace), True, trace, ("(a round trip)",))
    text = to_scenario(result, default_cloud)
    output = run_scenario(parse_scenario(text.encode(), kind))
    assert output["violations"] == []
    assert all(step["ok"] for step in output["steps"]), output["steps"]
    replayed = built[-1]
    assert abstract(replayed) == abstract(explored)
    assert replayed.hypervisor is not None and explored.hypervisor is not None
    assert replayed.hypervisor.calls == explored.hypervisor.calls


def test_the_steps_of_each_kind() -> None:
    def steps(kind: str) -> list[dict[str, object]]:
        trace = TRACES[kind]
        result = CheckResult(1, 1, 0.0, len(trace), True, trace, ())
        document = yaml.safe_load(to_scenario(result, default_cloud))
        found: list[dict[str, object]] = document["steps"]
        return found

    requests = steps("requests")
    assert requests[0] == {"op": "migrate", "instance": "vm1", "host": "host-c"}
    assert requests[5] == {
        "op": "race",
        "instance": "vm1",
        "first": {"op": "confirm_resize", "as": "owner"},
        "second": {"op": "revert_resize", "as": "owner"},
    }
    assert requests[7] == {"op": "resize", "instance": "vm2", "flavor": "m1.small", "as": "owner"}
    assert requests[8] == {"op": "lock", "instance": "vm1"}  # the admin locks
    assert steps("race with a resize")[0]["second"] == {
        "op": "resize",
        "flavor": "m1.small",
        "as": "owner",
    }
    assert steps("rollback")[-2:] == [
        {
            "op": "fault",
            "host": "host-a",
            "call": "migrate_disk_and_power_off",
            "rollback": True,
            "instance": "vm1",
        },
        {"op": "deliver"},
    ]
    assert steps("lost to the conductor, reconcile")[1:] == [
        {"op": "fault", "call": "migrate_server", "mode": "lose"},  # to the conductor: no host
        {"op": "deliver"},
        {"op": "reconcile"},
    ]
    lost = steps("lost to a compute, reconcile with a fault")
    assert lost[3]["host"] == "host-a"
    assert lost[5:] == [
        {"op": "fault", "host": "host-a", "call": "finish_revert_migration", "mode": "raise"},
        {"op": "reconcile"},
    ]
    assert steps("crash and restart")[-2:] == [
        {"op": "restart_compute", "host": "host-a"},
        {"op": "deliver"},
    ]
    assert steps("clock with a fault")[-1] == {"op": "advance_clock", "seconds": 60}


def test_the_file_names_the_trace_and_the_violation() -> None:
    trace = TRACES["raise"]
    result = CheckResult(1, 1, 0.0, 4, True, trace, ("vm1 (...): claims nothing",))
    text = to_scenario(result, default_cloud, title="A title.")
    assert text.startswith("# A title.\n# The shortest counterexample, 4 action(s):\n")
    assert "#   4. step (migrate_disk_and_power_off on host-a: raise)\n" in text
    assert "# It violates:\n#   vm1 (...): claims nothing\n" in text
    assert text.endswith("expect: {violations: []}\n")


# --- what cannot be written -------------------------------------------------------------


def test_no_counterexample_is_refused() -> None:
    result = CheckResult(10, 20, 0.1, 3, True)
    with pytest.raises(ValueError, match="no counterexample"):
        to_scenario(result, default_cloud)


def test_a_start_a_scenario_cannot_describe_is_refused() -> None:
    result = CheckResult(1, 1, 0.0, 1, True, (Action("migrate", "vm1"),), ())
    with pytest.raises(ValueError, match=r"config sets \['service_down_time'\]"):
        to_scenario(
            result,
            lambda: initial_cloud(1, 2, config=CloudConfig(service_down_time=30)),
        )

    def bigger_image() -> Cloud:
        cloud = initial_cloud(0, 2)
        cloud.boot("vm1", "m1.tiny", "host-a", image_min_disk_gb=5)
        return cloud

    with pytest.raises(ValueError, match=r"its \['instances', 'state'\] differ"):
        to_scenario(result, bigger_image)
