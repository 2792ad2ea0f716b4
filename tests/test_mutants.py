"""The verification kit must find bugs: five deliberate mutants of the machine and roles.

Each mutant is injected (a mutated transition table through ``Cloud(machine=...)``, or a
role method replaced with ``monkeypatch``) and both tools must catch it:

* the exhaustive model checker
  (:func:`~coldmig_fsm.verification.model_check.model_check`, 2 instances on
  3 hosts, default bounds, faults on) returns the *shortest* counterexample, pinned here
  action by action;
* the Hypothesis suite (:class:`coldmig_fsm.testing.ColdMigrationMachine`) fails with the
  violation that mutant must produce (its own instance and path may differ: a pattern),
  its shrunk trace at most a few steps longer;
* replayed without the mutant, the same counterexample holds every invariant (a refused
  step where the mutant widened a guard): the kill is the mutant's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from coldmig_fsm import (
    Cloud,
    ColdmigError,
    ComputeService,
    Machine,
    MachineState,
    PowerState,
    TaskState,
    VmState,
)
from coldmig_fsm.guards import require_task_state
from coldmig_fsm.machine import TABLE
from coldmig_fsm.messages import ConfirmResize, FinishRevertResize
from coldmig_fsm.roles import claims as claims_module
from coldmig_fsm.roles.compute import hops as compute_module
from coldmig_fsm.roles.compute import move as move_module
from coldmig_fsm.roles.compute.hops import Step
from coldmig_fsm.stores.memory import Store
from coldmig_fsm.testing import ColdMigrationMachine
from coldmig_fsm.verification.explorer import apply, check_step, observe
from coldmig_fsm.verification.model_check import KNOWN_ISSUES, initial_cloud, model_check

MUTANT_SETTINGS = settings(
    max_examples=300,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.generate, Phase.shrink],
    database=None,
    report_multiple_bugs=False,
    # A mutant makes most runs fail fast; that is the point, not a health problem.
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


def default_cloud() -> Cloud:
    return initial_cloud(2, 3)


# --- the mutants -------------------------------------------------------------------------


def revert_powers_on_stopped(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Cloud]:
    """finish_revert_resize forgets that the instance was stopped: it powers it on."""
    original = ComputeService.finish_revert_resize

    def mutant(self: ComputeService, message: FinishRevertResize) -> None:
        store = self.runtime.store
        instance = store.get_instance(message.instance_uuid)
        if instance.old_vm_state is VmState.STOPPED:
            metadata = {**instance.system_metadata, "old_vm_state": VmState.ACTIVE.value}
            store.save_instance(attrs.evolve(instance, system_metadata=metadata))
        original(self, message)

    monkeypatch.setattr(ComputeService, "finish_revert_resize", mutant)
    return default_cloud


def confirm_releases_wrong_claim(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Cloud]:
    """confirm_resize releases the instance's (destination) claim, not the migration's."""
    original = ComputeService.confirm_resize
    real = claims_module

    def mutant(self: ComputeService, message: ConfirmResize) -> None:
        def wrong_release(store: Store, consumer: str, host: str | None = None) -> None:
            real.release(store, message.instance_uuid, host)

        shim = SimpleNamespace(**{n: getattr(real, n) for n in real.__all__})
        shim.release = wrong_release
        monkeypatch.setattr(compute_module, "claims", shim)
        try:
            original(self, message)
        finally:
            monkeypatch.setattr(compute_module, "claims", real)

    monkeypatch.setattr(ComputeService, "confirm_resize", mutant)
    return default_cloud


def api_task_guard_widened(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Cloud]:
    """The API's task_state check of ``migrate`` also lets a moving instance through
    (a missing ``task_state`` / expected-task-state check)."""
    rules = []
    for original in TABLE:
        rule = original
        if rule.trigger == "migrate":
            moving = (
                MachineState(VmState.ACTIVE, TaskState.RESIZE_PREP),
                MachineState(VmState.STOPPED, TaskState.RESIZE_PREP),
            )
            rule = attrs.evolve(
                original,
                sources=(*rule.sources, *moving),
                guards=(
                    *original.guards[:3],
                    require_task_state(None, TaskState.RESIZE_PREP),
                ),
            )
        rules.append(rule)
    mutated = Machine(rules)
    return lambda: initial_cloud(2, 3, machine=mutated)


def rollback_forgets_dest_claim(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Cloud]:
    """A failed resize_instance gives the source claim back but keeps the destination's."""

    def mutant(step: Step) -> None:
        assert step.migration is not None
        claims_module.move_allocations(step.runtime.store, step.migration.uuid, step.instance.uuid)

    hop = attrs.evolve(move_module.RESIZE_INSTANCE, failure_claims=mutant)
    monkeypatch.setattr(move_module, "RESIZE_INSTANCE", hop)
    return default_cloud


def confirm_ignores_power_state(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Cloud]:
    """confirm_resize always ends ``active``, even for a guest that is shut down."""
    original = ComputeService.confirm_resize

    def mutant(self: ComputeService, message: ConfirmResize) -> None:
        store = self.runtime.store
        instance = store.get_instance(message.instance_uuid)
        store.save_instance(attrs.evolve(instance, power_state=PowerState.RUNNING))
        original(self, message)

    monkeypatch.setattr(ComputeService, "confirm_resize", mutant)
    return default_cloud


UUID = "[0-9a-f-]{36}"
VM = rf"vm\d \({UUID}\)"


@attrs.frozen
class Mutant:
    inject: Callable[[pytest.MonkeyPatch], Callable[[], Cloud]]
    counterexample: tuple[str, ...]  # the model checker's shortest trace
    violation: str  # what that trace violates, exactly
    hypothesis_violation: str  # a line of the Hypothesis failure matches this, whole
    examples: int = 300  # Hypothesis examples allowed to find it


MUTANTS = {
    "revert_powers_on_stopped": Mutant(
        revert_powers_on_stopped,
        (
            "migrate vm2",
            "step",
            "step",
            "step",
            "step",
            "revert_resize vm2",
            "step",
            "step",
        ),
        "vm2 (10cb783d-9c50-57a8-882a-bb51f58ff21c): stopped, but powered on by `step`",
        rf"{VM}: stopped, but powered on by `(step|advance_clock 60)`",
        examples=6_000,
    ),
    "confirm_releases_wrong_claim": Mutant(
        confirm_releases_wrong_claim,
        # The shortest path to a confirm is the auto-confirm of the clock advance.
        ("migrate vm1", "step", "step", "step", "step", "advance_clock 60"),
        "migration 1: confirmed but still holds ['host-a']",
        r"migration \d+: confirmed but still holds \['host-\w'\]",
    ),
    "api_task_guard_widened": Mutant(
        api_task_guard_widened,
        # (Four actions, ending in "2 migrations open at once", before the checker tried
        # the races that start with a migrate.)
        ("migrate vm1", "race migrate / migrate on vm1"),
        "`race migrate / migrate on vm1` raised RaceLost: both migrate and migrate were accepted",
        # Two moves at once: seen as two open migrations, as the second move claiming
        # on a host where the first already holds the instance's claim, or as a race of
        # two migrates that both were accepted.
        rf"(instance {UUID}: 2 migrations open at once"
        rf"|`[^`]+` raised ClaimError: {UUID} already holds a claim on host-\w"
        r"|`race migrate / migrate on vm\d` raised RaceLost: both migrate and migrate were "
        r"accepted)",
    ),
    "rollback_forgets_dest_claim": Mutant(
        rollback_forgets_dest_claim,
        ("migrate vm1", "step", "step", "step (migrate_disk_and_power_off on host-a: rollback)"),
        "vm1 (19ac5bc0-08eb-52f9-b1fb-8b78356f87c6): claims {'host-c': 1, 'host-a': 1} "
        "with no move under way",
        rf"{VM}: claims {{'host-\w': 1, 'host-\w': 1}} with no move under way",
        # A fault of one mode on one call at one hop: rarer for random runs (found at
        # the 689th example with every module loaded, see tests/conftest.py).
        examples=4_000,
    ),
    "confirm_ignores_power_state": Mutant(
        confirm_ignores_power_state,
        ("migrate vm2", "step", "step", "step", "step", "advance_clock 60"),
        "vm2 (10cb783d-9c50-57a8-882a-bb51f58ff21c): active but running on []",
        rf"{VM}: active but running on \[\]",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_model_checker_catches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mutant = MUTANTS[name]
    factory = mutant.inject(monkeypatch)
    result = model_check(factory, ignore=KNOWN_ISSUES)
    assert result.counterexample is not None, f"{name} survived the model checker"
    assert tuple(str(a) for a in result.counterexample) == mutant.counterexample
    assert mutant.violation in result.violations, result.violations


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_hypothesis_suite_catches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mutant = MUTANTS[name]
    machine = ColdMigrationMachine.for_cloud(mutant.inject(monkeypatch))
    with pytest.raises(AssertionError) as caught:
        run_state_machine_as_test(
            machine, settings=settings(MUTANT_SETTINGS, max_examples=mutant.examples)
        )
    trace = machine.last_trace
    lines = str(caught.value).splitlines()
    assert any(re.fullmatch(mutant.hypothesis_violation, line) for line in lines), lines
    # Shrunk: no longer than the shortest trace plus a few set-up steps.
    assert len(trace) <= len(mutant.counterexample) + 3, trace


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_counterexample_holds_without_the_mutant(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill is the mutant's: its counterexample, replayed on the shipped cloud, breaks
    no invariant (or is refused where the mutant widened a guard)."""
    result = model_check(MUTANTS[name].inject(monkeypatch), ignore=KNOWN_ISSUES)
    assert result.counterexample is not None
    monkeypatch.undo()
    cloud = default_cloud()
    refused = []
    for action in result.counterexample:
        before = observe(cloud)
        try:
            delivered = apply(cloud, action)
        except ColdmigError as refusal:
            refused.append((str(action), type(refusal).__name__))
            continue
        idle = not cloud.pending() and all(cloud.is_up(h) for h in cloud.hosts)
        assert check_step(before, cloud, action, delivered, idle=idle) == [], str(action)
    widened = [("race migrate / migrate on vm1", "InstanceInvalidState")]
    expected = widened if name == "api_task_guard_widened" else []
    assert refused == expected
