"""The verification kit must find bugs: five deliberate mutants of the machine and roles.

Each mutant is injected (a mutated transition table through ``Cloud(machine=...)``, or a
role method replaced with ``monkeypatch``) and both tools must catch it:

* the exhaustive model checker (:func:`coldmig_fsm.verify.model_check`, 2 instances on
  3 hosts, default bounds, faults on) returns the *shortest* counterexample, pinned here
  action by action;
* the Hypothesis suite (:class:`coldmig_fsm.testing.ColdMigrationMachine`) fails, and its
  shrunk trace holds the same decisive actions, in at most a few more steps.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from coldmig_fsm import Cloud, ComputeService, Machine, MachineState, PowerState, TaskState, VmState
from coldmig_fsm import claims as claims_module
from coldmig_fsm import compute as compute_module
from coldmig_fsm.guards import require_task_state
from coldmig_fsm.machine import TABLE
from coldmig_fsm.messages import ConfirmResize, FinishRevertResize
from coldmig_fsm.records import Instance, Migration
from coldmig_fsm.store import Store
from coldmig_fsm.testing import ColdMigrationMachine
from coldmig_fsm.verify import KNOWN_ISSUES, initial_cloud, model_check

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

    def mutant(
        self: ComputeService, instance: Instance, migration: Migration
    ) -> Callable[[], None]:
        def fix() -> None:
            claims_module.move_allocations(self.runtime.store, migration.uuid, instance.uuid)

        return fix

    monkeypatch.setattr(ComputeService, "_claims_back_on_source", mutant)
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


@attrs.frozen
class Mutant:
    inject: Callable[[pytest.MonkeyPatch], Callable[[], Cloud]]
    counterexample: tuple[str, ...]  # the model checker's shortest trace
    violation: str  # a fragment of what it violates
    decisive: tuple[str, ...]  # the Hypothesis trace holds an action containing one of these
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
        ("revert_resize",),
        examples=6_000,
    ),
    "confirm_releases_wrong_claim": Mutant(
        confirm_releases_wrong_claim,
        # The shortest path to a confirm is the auto-confirm of the clock advance.
        ("migrate vm1", "step", "step", "step", "step", "advance_clock 60"),
        "migration 1: confirmed but still holds ['host-a']",
        ("confirm_resize", "advance_clock"),
    ),
    "api_task_guard_widened": Mutant(
        api_task_guard_widened,
        ("migrate vm1", "migrate vm1", "step", "step"),
        "migrations open at once",
        ("both migrate and migrate were accepted", "migrate vm"),
    ),
    "rollback_forgets_dest_claim": Mutant(
        rollback_forgets_dest_claim,
        ("migrate vm1", "step", "step", "step (migrate_disk_and_power_off on host-a: rollback)"),
        "with no move under way",
        (": rollback)",),
        # A fault of one mode on one call at one hop: rarer for random runs.
        examples=2_000,
    ),
    "confirm_ignores_power_state": Mutant(
        confirm_ignores_power_state,
        ("migrate vm2", "step", "step", "step", "step", "advance_clock 60"),
        "vm2 (10cb783d-9c50-57a8-882a-bb51f58ff21c): active but running on []",
        ("confirm_resize", "advance_clock"),
    ),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_model_checker_catches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mutant = MUTANTS[name]
    factory = mutant.inject(monkeypatch)
    result = model_check(factory, ignore=KNOWN_ISSUES)
    assert result.counterexample is not None, f"{name} survived the model checker"
    assert tuple(str(a) for a in result.counterexample) == mutant.counterexample
    assert any(mutant.violation in v for v in result.violations), result.violations


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_hypothesis_suite_catches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mutant = MUTANTS[name]
    machine = ColdMigrationMachine.for_cloud(mutant.inject(monkeypatch))
    with pytest.raises(AssertionError) as caught:
        run_state_machine_as_test(
            machine, settings=settings(MUTANT_SETTINGS, max_examples=mutant.examples)
        )
    trace = machine.last_trace
    # The decisive action is in the trace, or is the failing action itself (a race rule
    # fails inside the action, before it is recorded: its message names it).
    seen = (*trace, str(caught.value))
    assert any(d in action for action in seen for d in mutant.decisive), (trace, caught.value)
    # Shrunk: no longer than the shortest trace plus a few set-up steps.
    assert len(trace) <= len(mutant.counterexample) + 3, trace


def test_mutated_cloud_is_the_mutant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sanity: without a mutant the same check finds nothing (so the kills are real)."""
    result = model_check(default_cloud, ignore=KNOWN_ISSUES)
    assert result.ok, result.describe()
    assert result.complete
