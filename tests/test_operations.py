"""The operation registry: declared once, read by the API, the table, Cloud, scenarios."""

from __future__ import annotations

import attrs
import pytest

from coldmig_fsm import Caller, MachineDefinitionError, Outcome
from coldmig_fsm.guards import PolicyRule, require_policy
from coldmig_fsm.harness.scenario import REQUIRED_OP_KEYS, SUPPORTED_OPS
from coldmig_fsm.machine import TABLE, Machine, Role
from coldmig_fsm.operations import OPERATIONS, Argument, Op, admin_only
from coldmig_fsm.roles.api import ACTION_NAMES
from tests.conftest import make_cloud


def test_every_op_is_declared_once_in_order() -> None:
    assert list(OPERATIONS) == list(Op)
    assert all(spec.op is op for op, spec in OPERATIONS.items())


def test_the_declarations_are_novas_names_and_policies() -> None:
    assert {
        op.value: (s.action, s.policy, s.argument, s.required) for op, s in OPERATIONS.items()
    } == {
        "migrate": ("migrate", PolicyRule.ADMIN, Argument.HOST, False),
        "resize": ("resize", PolicyRule.ADMIN_OR_OWNER, Argument.FLAVOR, True),
        "confirm_resize": ("confirmResize", PolicyRule.ADMIN_OR_OWNER, None, False),
        "revert_resize": ("revertResize", PolicyRule.ADMIN_OR_OWNER, None, False),
        "stop": ("stop", PolicyRule.ADMIN_OR_OWNER, None, False),
        "start": ("start", PolicyRule.ADMIN_OR_OWNER, None, False),
        "lock": ("lock", PolicyRule.ADMIN_OR_OWNER, None, False),
        "unlock": ("unlock", PolicyRule.ADMIN_OR_OWNER, None, False),
        "delete": ("delete", PolicyRule.ADMIN_OR_OWNER, None, False),
        "abort_migration": ("abortMigration", PolicyRule.ADMIN, None, False),
    }
    assert [op.value for op in Op if admin_only(op)] == ["migrate", "abort_migration"]
    assert [op.value for op in Op if not OPERATIONS[op].in_nova] == ["abort_migration"]


def test_the_api_rules_of_the_table_are_the_state_changing_operations() -> None:
    api = {r.trigger: r for r in TABLE if r.role is Role.API}
    assert set(api) == {op.value for op, s in OPERATIONS.items() if s.changes_state}
    assert {op.value for op, s in OPERATIONS.items() if not s.changes_state} == {"lock", "unlock"}
    for trigger, rule in api.items():
        # Each API rule's first guard is the declared policy.
        assert repr(rule.guards[0]) == repr(require_policy(OPERATIONS[Op(trigger)].policy))


def test_a_table_without_an_operations_rule_is_refused_at_build() -> None:
    broken = [r for r in TABLE if r.trigger != "stop"]
    with pytest.raises(MachineDefinitionError) as caught:
        Machine(broken)
    assert str(caught.value) == (
        "the API rules and the operations of operations.py differ: "
        "only in the table [], only declared ['stop']"
    )
    extra = [*TABLE, attrs.evolve(next(r for r in TABLE if r.trigger == "stop"), trigger="halt")]
    with pytest.raises(MachineDefinitionError, match=r"only in the table \['halt'\]"):
        Machine(extra)


def test_readers_take_it_from_the_registry() -> None:
    assert {k: ACTION_NAMES[k] for k in ACTION_NAMES} == {
        op.value: s.action for op, s in OPERATIONS.items()
    }
    assert {op: SUPPORTED_OPS[op] for op in Op} == {
        "migrate": {"instance", "as", "host"},
        "resize": {"instance", "as", "flavor"},
        **{op.value: {"instance", "as"} for op in Op if OPERATIONS[op].argument is None},
    }
    assert REQUIRED_OP_KEYS["resize"] == {"instance", "flavor"}
    assert REQUIRED_OP_KEYS["migrate"] == {"instance"}
    assert set(SUPPORTED_OPS) - set(Op) == {
        "fault",
        "restart_compute",
        "advance_clock",
        "deliver",
        "reconcile",
        "settle_all",
        "race",
    }


def test_cloud_request_is_the_named_methods() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    moving = cloud.request("resize", "vm1", "m1.small", Caller.owner("demo"))
    assert moving.wait().ok
    assert cloud.instance("vm1").flavor == "m1.small"
    assert cloud.request(Op.CONFIRM_RESIZE, "vm1").wait().outcome is Outcome.SUCCEEDED
    assert cloud.request(Op.LOCK, "vm1").wait().ok
    assert cloud.instance("vm1").locked
    assert [a.action for a in cloud.actions("vm1")] == ["resize", "confirmResize", "lock"]


def test_cloud_request_refuses_an_unknown_op_or_a_missing_argument() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    with pytest.raises(ValueError, match="'rezise' is not a valid Op"):
        cloud.request("rezise", "vm1")
    with pytest.raises(ValueError, match="resize needs its flavor"):
        cloud.request(Op.RESIZE, "vm1")
    assert cloud.actions("vm1") == []
