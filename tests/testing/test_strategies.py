"""The strategies draw well-formed clouds and fault plans."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coldmig_fsm import Cloud, FakeFault
from coldmig_fsm.testing.strategies import clouds, fault_plans
from coldmig_fsm.verification.invariants import violations


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(clouds())
def test_drawn_clouds_hold_every_invariant(cloud: Cloud) -> None:
    assert violations(cloud) == []
    assert 2 <= len(cloud.hosts) <= 4
    assert len(cloud.store.list_flavors()) == 2


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(st.data())
def test_fault_plans_arm(data: st.DataObject) -> None:
    cloud = data.draw(clouds(max_instances=1))
    plan = data.draw(fault_plans(cloud.hosts))
    assert cloud.hypervisor is not None
    for fault in plan:
        assert isinstance(fault, FakeFault)
        cloud.hypervisor.arm(fault)
    assert len(cloud.hypervisor.armed) == len(plan)
