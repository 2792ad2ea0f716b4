"""The fake hypervisor's faults: what an armed fault raises, and that raising it leaves
no reference cycle behind (the model checker raises them by the thousand and relies on
reference counting to free each state's frames)."""

from __future__ import annotations

import gc

import pytest

from coldmig_fsm.drivers.fake import FakeFault, FakeHypervisor, FaultMode, SimulatedCrash
from coldmig_fsm.exceptions import DriverTimeout, HypervisorError, InstanceFaultRollback
from tests.conftest import make_cloud


@pytest.mark.parametrize(
    ("mode", "rollback", "raised"),
    [
        (FaultMode.RAISE, False, HypervisorError),
        (FaultMode.RAISE, True, InstanceFaultRollback),
        (FaultMode.HANG, False, DriverTimeout),
        (FaultMode.CRASH, False, SimulatedCrash),
    ],
)
def test_an_armed_fault_raises_and_leaves_no_reference_cycle(
    mode: FaultMode, rollback: bool, raised: type[BaseException]
) -> None:
    cloud = make_cloud()
    vm = cloud.boot("vm1", "m1.tiny", "host-a")
    hypervisor = cloud.hypervisor
    assert isinstance(hypervisor, FakeHypervisor)
    driver = cloud.driver("host-a")
    hypervisor.arm(FakeFault("host-a", "power_off", mode, rollback=rollback, message="boom"))
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(raised) as caught:
            driver.power_off(vm)
        if isinstance(caught.value, InstanceFaultRollback):
            assert isinstance(caught.value.inner, HypervisorError)
            assert str(caught.value.inner) == "boom"
        elif mode is FaultMode.RAISE:
            assert str(caught.value) == "boom"
        del caught
        assert gc.collect() == 0  # nothing was left for the cyclic collector
    finally:
        gc.enable()
