"""The stateful suite on the shipped cloud: every operation, fault and restart.

One line per configuration, as a user would write it (``docs/verification.md``).
"""

from __future__ import annotations

import pytest

from coldmig_fsm import Cloud, CloudConfig, FakeFault, FaultMode, VmState
from coldmig_fsm.operations import Op
from coldmig_fsm.testing import ColdMigrationMachine
from coldmig_fsm.verification.model_check import initial_cloud
from tests.testing.conftest import PROFILE, TIMEOUT


def default_cloud() -> Cloud:
    return initial_cloud(instances=2, hosts=3)


def same_host_cloud() -> Cloud:
    """Same-host resizes allowed, no auto-confirm: other paths of the scheduler."""
    return initial_cloud(instances=2, hosts=2, config=CloudConfig(allow_resize_to_same_host=True))


# The CI profile's fixed budget (2,000 examples of 30 steps) takes about 40 s on an idle
# core and over 120 s, the suite's default timeout, on a loaded one; the explore profile's
# takes minutes (see TIMEOUT).
TestColdMigration = pytest.mark.timeout(TIMEOUT)(
    ColdMigrationMachine.for_cloud(default_cloud, settings=PROFILE).TestCase
)
TestSameHost = ColdMigrationMachine.for_cloud(
    same_host_cloud, settings=PROFILE.__class__(PROFILE, max_examples=300)
).TestCase


def _preconditions(rule: object) -> tuple[object, ...]:
    return tuple(rule.hypothesis_stateful_rule.preconditions)  # type: ignore[attr-defined]


def test_reconcile_is_tried_while_a_crash_is_armed() -> None:
    # It used to be excluded then ("a known issue" that KNOWN_ISSUES did not list).
    assert _preconditions(ColdMigrationMachine.reconcile) == ()
    assert len(_preconditions(ColdMigrationMachine.step)) == 1  # the probe sees preconditions


def test_a_crash_during_reconcile_holds_every_invariant() -> None:
    machine = ColdMigrationMachine()
    machine.request(Op.MIGRATE, 0)  # vm1, active on host-a
    for _ in range(3):
        machine.step()  # migrate_server, prep_resize, resize_instance
    machine.lose_message()  # finish_resize: vm1 stays resize_migrated
    cloud = machine.cloud
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "finish_revert_migration", FaultMode.CRASH))
    machine.reconcile()  # the recovery rolls back to host-a, and crashes there
    machine.spec_invariants()
    assert not cloud.is_up("host-a")
    machine.restart_compute(0)
    machine.spec_invariants()
    vm = cloud.instance("vm1")
    assert (vm.vm_state, vm.task_state, vm.host) == (VmState.ACTIVE, None, "host-a")
    assert machine.trace == [
        "migrate vm1",
        "step",
        "step",
        "step",
        "step (message lost)",
        "reconcile",
        "restart_compute host-a",
    ]
