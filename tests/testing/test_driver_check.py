"""check_driver and the driver comparison machine, on the fake driver and a broken one."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from coldmig_fsm.drivers.base import HypervisorDriver
from coldmig_fsm.drivers.fake import FakeDriver, FakeHypervisor
from coldmig_fsm.records import Instance, Migration
from coldmig_fsm.testing import DriverComparisonMachine, check_driver
from coldmig_fsm.testing.driver_check import DriverPair, fake_pair
from tests.testing.conftest import PROFILE


class StartsEverything(FakeDriver):
    """A broken driver: ``finish_revert_migration`` ignores ``power_on=False``."""

    def finish_revert_migration(
        self, instance: Instance, migration: Migration, power_on: bool
    ) -> None:
        super().finish_revert_migration(instance, migration, True)


class DestroyNotIdempotent(FakeDriver):
    def destroy(self, instance: Instance, destroy_disks: bool = True) -> None:
        if instance.uuid not in self.list_instances():
            raise RuntimeError("no such guest")
        super().destroy(instance, destroy_disks)


def broken_pair(cls: type[FakeDriver]) -> DriverPair:
    hypervisor = FakeHypervisor(["check-src", "check-dst"])
    src: HypervisorDriver = cls(hypervisor, "check-src")
    dst: HypervisorDriver = cls(hypervisor, "check-dst")
    return src, dst


def test_the_fake_driver_keeps_the_contract() -> None:
    check_driver(fake_pair)


def test_a_driver_that_starts_stopped_guests_fails() -> None:
    with pytest.raises(AssertionError, match=r"^revert: finish_revert_migration\(power_on=False\)"):
        check_driver(lambda: broken_pair(StartsEverything))


def test_a_destroy_that_is_not_idempotent_fails() -> None:
    with pytest.raises(RuntimeError, match="no such guest"):
        check_driver(lambda: broken_pair(DestroyNotIdempotent))


def test_same_hosts_twice_is_refused() -> None:
    hypervisor = FakeHypervisor()
    with pytest.raises(AssertionError, match="two different hosts"):
        check_driver(lambda: (hypervisor.add_host("x"), hypervisor.add_host("x")))


TestFakeBesideModel = DriverComparisonMachine.for_driver(fake_pair).TestCase
TestFakeBesideModel.settings = PROFILE.__class__(PROFILE, max_examples=300)


def test_the_comparison_catches_a_broken_driver() -> None:
    machine = DriverComparisonMachine.for_driver(lambda: broken_pair(StartsEverything))
    with pytest.raises(AssertionError, match="the model says shutdown"):
        run_state_machine_as_test(
            machine, settings=settings(PROFILE, max_examples=300, report_multiple_bugs=False)
        )
