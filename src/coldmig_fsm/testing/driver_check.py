"""The hypervisor driver contract, as checks a third-party driver can run.

:func:`check_driver` (in the spirit of trio's ``check_one_way_stream``) takes a factory
returning two drivers of *one* backend, on two different hosts, with no guests; it runs
every verb of :class:`~coldmig_fsm.HypervisorDriver` with plain ``assert`` statements and
raises ``AssertionError`` naming the broken rule. Each check uses a fresh pair.

:class:`DriverComparisonMachine` goes further: it runs random sequences of driver calls
on your pair and on the fake driver (the model) side by side and compares what both
report (``get_info`` of every guest on both hosts, ``list_instances``) after every call::

    TestMyDriver = DriverComparisonMachine.for_driver(my_pair_factory).TestCase
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import ClassVar

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coldmig_fsm.drivers.base import DiskInfo, DriverCapabilities, HypervisorDriver
from coldmig_fsm.drivers.fake import FakeHypervisor
from coldmig_fsm.records import Flavor, Instance, Migration
from coldmig_fsm.states import MigrationStatus, MigrationType, PowerState

__all__ = ["DriverComparisonMachine", "DriverPair", "check_driver", "fake_pair"]

DriverPair = tuple[HypervisorDriver, HypervisorDriver]
"""(source, destination): two hosts of one backend."""

TINY = Flavor("check.tiny", vcpus=1, ram_mb=512, root_gb=1)
SMALL = Flavor("check.small", vcpus=1, ram_mb=1024, root_gb=2)
_T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def fake_pair() -> DriverPair:
    """Two fake hosts, ``check-src`` and ``check-dst``: the model, and an example factory."""
    hypervisor = FakeHypervisor()
    return hypervisor.add_host("check-src"), hypervisor.add_host("check-dst")


def _instance(name: str, host: str) -> Instance:
    return Instance(
        uuid=f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
        name=name,
        project_id="check",
        host=host,
        flavor=TINY.id,
    )


def _migration(instance: Instance, source: str, dest: str, new: Flavor) -> Migration:
    return Migration(
        id=1,
        uuid=f"mig-{instance.uuid}",
        instance_uuid=instance.uuid,
        migration_type=MigrationType.MIGRATION if new == TINY else MigrationType.RESIZE,
        status=MigrationStatus.MIGRATING,
        source_compute=source,
        old_flavor=TINY.id,
        new_flavor=new.id,
        dest_compute=dest,
        created_at=_T0,
        updated_at=_T0,
    )


def _power(driver: HypervisorDriver, instance: Instance) -> PowerState:
    return driver.get_info(instance).power_state


def _move(
    src: HypervisorDriver, dst: HypervisorDriver, vm: Instance, new: Flavor, power_on: bool
) -> tuple[Migration, DiskInfo]:
    migration = _migration(vm, src.host, dst.host, new)
    disk = src.migrate_disk_and_power_off(vm, dst.host, new, 0, 1)
    assert isinstance(disk, DiskInfo), "migrate_disk_and_power_off must return a DiskInfo"
    at_dest = attrs.evolve(vm, host=dst.host, node=dst.host)
    dst.finish_migration(at_dest, migration, disk, new, new != TINY, power_on)
    return migration, disk


# --- the checks --------------------------------------------------------------------------


def _check_identity(src: HypervisorDriver, dst: HypervisorDriver) -> None:
    assert isinstance(src, HypervisorDriver), "the driver does not implement HypervisorDriver"
    assert src.host != dst.host, "the factory must return drivers of two different hosts"
    assert isinstance(src.capabilities, DriverCapabilities), "capabilities: DriverCapabilities"
    assert src.list_instances() == [], "a fresh host lists no guest"
    assert _power(src, _instance("ghost", src.host)) is PowerState.NOSTATE, (
        "get_info of a guest the host does not have is NOSTATE"
    )


def _check_spawn(src: HypervisorDriver, dst: HypervisorDriver) -> None:
    on, off = _instance("spawn-on", src.host), _instance("spawn-off", src.host)
    src.spawn(on, TINY, power_on=True)
    src.spawn(off, TINY, power_on=False)
    assert _power(src, on) is PowerState.RUNNING, "spawn(power_on=True) starts the guest"
    assert _power(src, off) is PowerState.SHUTDOWN, "spawn(power_on=False) leaves it shut down"
    assert src.list_instances() == sorted([on.uuid, off.uuid]), "list_instances: sorted uuids"
    assert dst.list_instances() == [], "a guest spawned on one host is not on the other"
    assert _power(dst, on) is PowerState.NOSTATE, "get_info on the other host is NOSTATE"


def _check_power(src: HypervisorDriver, dst: HypervisorDriver) -> None:
    vm = _instance("power", src.host)
    src.spawn(vm, TINY, power_on=True)
    src.power_off(vm, 0, 1)
    assert _power(src, vm) is PowerState.SHUTDOWN, "power_off shuts the guest down"
    src.power_on(vm)
    assert _power(src, vm) is PowerState.RUNNING, "power_on starts it"


def _check_migrate_running(src: HypervisorDriver, dst: HypervisorDriver) -> None:
    vm = _instance("move-running", src.host)
    src.spawn(vm, TINY, power_on=True)
    migration = _migration(vm, src.host, dst.host, SMALL)
    disk = src.migrate_disk_and_power_off(vm, dst.host, SMALL, 0, 1)
    assert isinstance(disk, DiskInfo), "migrate_disk_and_power_off returns a DiskInfo"
    assert _power(src, vm) is PowerState.SHUTDOWN, "the source guest is off after the copy"
    assert vm.uuid in src.list_instances(), "the source guest stays defined until confirm"
    dst.finish_migration(vm, migration, disk, SMALL, True, True)
    assert _power(dst, vm) is PowerState.RUNNING, "finish_migration(power_on=True) starts it"
    assert _power(src, vm) is PowerState.SHUTDOWN, "only one host runs the guest"
    src.confirm_migration(vm, migration)
    assert vm.uuid not in src.list_instances(), "confirm_migration removes the source guest"
    assert _power(dst, vm) is PowerState.RUNNING, "confirm leaves the destination guest alone"


def _check_migrate_stopped(src: HypervisorDriver, dst: HypervisorDriver) -> None:
    vm = _instance("move-stopped", src.host)
    src.spawn(vm, TINY, power_on=False)
    _move(src, dst, vm, TINY, power_on=False)
    assert _power(src, vm) is PowerState.SHUTDOWN, "a stopped guest is not started by the copy"
    assert _power(dst, vm) is PowerState.SHUTDOWN, (
        "finish_migration(power_on=False) does not start the guest"
    )


def _check_revert(src: HypervisorDriver, dst: HypervisorDriver) -> None:
    for power_on in (True, False):
        vm = _instance(f"revert-{power_on}", src.host)
        src.spawn(vm, TINY, power_on=power_on)
        migration, _ = _move(src, dst, vm, SMALL, power_on)
        dst.destroy(vm, destroy_disks=True)
        assert vm.uuid not in dst.list_instances(), "destroy removes the destination guest"
        src.finish_revert_migration(vm, migration, power_on)
        expected = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        assert _power(src, vm) is expected, (
            f"finish_revert_migration(power_on={power_on}) leaves the guest {expected.label}"
        )
        assert vm.uuid in src.list_instances(), "the reverted guest is defined on the source"


def _check_destroy(src: HypervisorDriver, dst: HypervisorDriver) -> None:
    vm = _instance("destroy", src.host)
    src.spawn(vm, TINY, power_on=True)
    src.destroy(vm, destroy_disks=True)
    assert vm.uuid not in src.list_instances(), "destroy removes the guest"
    assert _power(src, vm) is PowerState.NOSTATE, "a destroyed guest reports NOSTATE"
    src.destroy(vm, destroy_disks=True)  # must not raise: destroy is idempotent
    dst.destroy(_instance("never-there", dst.host))  # nor for a guest never defined


CHECKS: tuple[Callable[[HypervisorDriver, HypervisorDriver], None], ...] = (
    _check_identity,
    _check_spawn,
    _check_power,
    _check_migrate_running,
    _check_migrate_stopped,
    _check_revert,
    _check_destroy,
)


def check_driver(factory: Callable[[], DriverPair]) -> None:
    """Run every contract check on fresh driver pairs from ``factory``.

    Args:
        factory: returns ``(source, destination)``: two drivers of one backend on two
            different hosts, with no guests (called once per check).

    Raises:
        AssertionError: the first broken rule, prefixed with the check's name.
    """
    for check in CHECKS:
        src, dst = factory()
        try:
            check(src, dst)
        except AssertionError as broken:
            raise AssertionError(f"{check.__name__.removeprefix('_check_')}: {broken}") from broken


# --- the driver beside the model ---------------------------------------------------------

_NAMES = ("g0", "g1", "g2")


class DriverComparisonMachine(RuleBasedStateMachine):
    """Driver calls on the pair under test and on the fake pair; compared after each.

    Rules: spawn (on or off), power on/off, a move (``migrate_disk_and_power_off`` then
    ``finish_migration``), ``confirm_migration``, a revert (``destroy`` on the
    destination then ``finish_revert_migration``) and ``destroy``. Preconditions read the
    model only, so that both sides always receive the same calls.
    """

    factory: ClassVar[Callable[[], DriverPair]] = staticmethod(fake_pair)

    def __init__(self) -> None:
        super().__init__()
        self.model = fake_pair()
        self.real = type(self).factory()
        self.moves: dict[str, tuple[int, Migration, bool]] = {}

    @classmethod
    def for_driver(cls, factory: Callable[[], DriverPair]) -> type[DriverComparisonMachine]:
        """A subclass comparing ``factory()``'s pair with the fake; use its ``.TestCase``."""
        return type(
            f"{cls.__name__}For_{getattr(factory, '__name__', 'driver')}",
            (cls,),
            {"factory": staticmethod(factory)},
        )

    def _vm(self, name: str, side: int) -> Instance:
        return _instance(name, self.real[side].host)

    def _where(self, name: str) -> int | None:
        vm = _instance(name, "any")
        for side in (0, 1):
            if vm.uuid in self.model[side].list_instances():
                return side
        return None

    def _both(
        self, side: int, call: Callable[[HypervisorDriver, Instance], None], name: str
    ) -> None:
        call(self.model[side], _instance(name, self.model[side].host))
        call(self.real[side], self._vm(name, side))

    @rule(name=st.sampled_from(_NAMES), side=st.sampled_from((0, 1)), power_on=st.booleans())
    def spawn(self, name: str, side: int, power_on: bool) -> None:
        if self._where(name) is not None:
            return
        self._both(side, lambda d, vm: d.spawn(vm, TINY, power_on), name)

    @rule(name=st.sampled_from(_NAMES), on=st.booleans())
    def power(self, name: str, on: bool) -> None:
        side = self._where(name)
        if side is None or name in self.moves:
            return
        if on:
            self._both(side, lambda d, vm: d.power_on(vm), name)
        else:
            self._both(side, lambda d, vm: d.power_off(vm, 0, 1), name)

    @rule(name=st.sampled_from(_NAMES), resize=st.booleans(), power_on=st.booleans())
    def move(self, name: str, resize: bool, power_on: bool) -> None:
        side = self._where(name)
        if side is None or name in self.moves:
            return
        flavor = SMALL if resize else TINY
        for pair in (self.model, self.real):
            vm = _instance(name, pair[side].host)
            migration = _migration(vm, pair[side].host, pair[1 - side].host, flavor)
            disk = pair[side].migrate_disk_and_power_off(vm, pair[1 - side].host, flavor, 0, 1)
            pair[1 - side].finish_migration(vm, migration, disk, flavor, resize, power_on)
        self.moves[name] = (side, _migration(self._vm(name, side), "", "", flavor), power_on)

    @precondition(lambda self: bool(self.moves))
    @rule(pick=st.integers(0, 2))
    def confirm(self, pick: int) -> None:
        name = sorted(self.moves)[pick % len(self.moves)]
        side, _, _ = self.moves.pop(name)
        for pair in (self.model, self.real):
            vm = _instance(name, pair[side].host)
            pair[side].confirm_migration(
                vm, _migration(vm, pair[side].host, pair[1 - side].host, TINY)
            )

    @precondition(lambda self: bool(self.moves))
    @rule(pick=st.integers(0, 2), power_on=st.booleans())
    def revert(self, pick: int, power_on: bool) -> None:
        name = sorted(self.moves)[pick % len(self.moves)]
        side, _, _ = self.moves.pop(name)
        for pair in (self.model, self.real):
            vm = _instance(name, pair[side].host)
            migration = _migration(vm, pair[side].host, pair[1 - side].host, TINY)
            pair[1 - side].destroy(vm, destroy_disks=True)
            pair[side].finish_revert_migration(vm, migration, power_on)

    @rule(name=st.sampled_from(_NAMES))
    def destroy(self, name: str) -> None:
        self.moves.pop(name, None)
        for side in (0, 1):
            self._both(side, lambda d, vm: d.destroy(vm, destroy_disks=True), name)

    @invariant()
    def same_as_model(self) -> None:
        for side in (0, 1):
            model, real = self.model[side], self.real[side]
            assert real.list_instances() == model.list_instances(), (
                f"{real.host}: guests {real.list_instances()}, the model has "
                f"{model.list_instances()}"
            )
            for name in _NAMES:
                want = _power(model, _instance(name, model.host))
                got = _power(real, self._vm(name, side))
                assert got is want, (
                    f"{real.host}: {name} is {got.label}, the model says {want.label}"
                )
