"""An in-memory multi-host hypervisor: the test double shipped with the library.

:class:`FakeHypervisor` is the whole fake "data centre": it knows every host's guests,
so a disk copy from one host to another can be modelled. :meth:`FakeHypervisor.driver`
hands out the per-host :class:`FakeDriver` that implements
:class:`~coldmig_fsm.drivers.HypervisorDriver`.

Model of one guest on one host: defined or not, its power state, the flavor it was
defined with, and whether its disks are there. A move to the *same* host keeps the old
guest aside as a backup (as a real hypervisor keeps the ``_resize`` copy) until it is
confirmed or reverted.

Every call but ``get_info`` is appended to :attr:`FakeHypervisor.calls`, before it
runs, with the host, the verb and the instance. Faults are data:
:meth:`FakeHypervisor.arm` makes the next matching calls raise, with no subclass per
failure.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import attrs
import cattrs

from coldmig_fsm.drivers.base import DiskInfo, DriverCapabilities, GuestInfo
from coldmig_fsm.exceptions import DriverTimeout, HypervisorError, InstanceFaultRollback
from coldmig_fsm.records import Flavor, Instance, Migration
from coldmig_fsm.states import PowerState

__all__ = [
    "DriverCall",
    "FakeDriver",
    "FakeFault",
    "FakeGuest",
    "FakeHypervisor",
    "FaultMode",
    "SimulatedCrash",
]

_GIB = 1024**3


@attrs.frozen
class DriverCall:
    """One logged driver call."""

    host: str
    call: str
    instance: str


@attrs.frozen
class FakeGuest:
    """One guest on one host. ``backup`` is the guest kept aside by a same-host move."""

    uuid: str
    power_state: PowerState
    vcpus: int
    ram_mb: int
    disk_gb: int
    backup: FakeGuest | None = None


class FaultMode(enum.StrEnum):
    """What an armed fault does to the call.

    ``raise``: the call fails (``HypervisorError``, or ``InstanceFaultRollback`` with
    ``rollback``). ``crash``: the host's compute service dies in the middle of the call
    (:class:`SimulatedCrash`); the call has no effect on the guest and nothing after it
    runs until the service restarts. ``hang``: the call never returns; the caller's
    timeout applies, so the call fails with ``DriverTimeout`` (the guest is left as the
    call found it, but the caller cannot know that).
    """

    RAISE = "raise"
    CRASH = "crash"
    HANG = "hang"


class SimulatedCrash(BaseException):
    """The compute service of ``host`` died in the middle of a driver call.

    A ``BaseException``: no ``except Exception`` in a role catches it, exactly as a dead
    process runs no error handling. :class:`coldmig_fsm.Cloud` catches it and marks the
    host's compute service down.
    """

    def __init__(self, host: str, call: str) -> None:
        super().__init__(f"compute service of {host} crashed during {call}")
        self.host = host
        self.call = call


@attrs.frozen
class FakeFault:
    """A fault armed for the next ``times`` calls of ``call`` on ``host``.

    ``rollback`` (mode ``raise`` only) raises :class:`InstanceFaultRollback` (the guest
    is intact) instead of a plain :class:`HypervisorError`. ``instance`` restricts it to
    one instance uuid.
    """

    host: str
    call: str
    mode: FaultMode = FaultMode.RAISE
    times: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    message: str = "injected fault"
    rollback: bool = False
    instance: str | None = None
    timeout: float = 60.0

    def matches(self, call: DriverCall) -> bool:
        return (
            self.host == call.host
            and self.call == call.call
            and (self.instance is None or self.instance == call.instance)
        )

    def fire(self) -> None:
        """Raise what this fault does to the call."""
        if self.mode is FaultMode.CRASH:
            raise SimulatedCrash(self.host, self.call)
        if self.mode is FaultMode.HANG:
            raise DriverTimeout(
                f"{self.call} on {self.host} did not return within {self.timeout:g} s"
            )
        # No local name for the error: a frame that holds the exception its traceback
        # holds is a reference cycle, which keeps every frame of the raising call (and
        # whatever they refer to) alive until the cyclic collector runs.
        if self.rollback:
            raise InstanceFaultRollback(HypervisorError(self.message))
        raise HypervisorError(self.message)


_converter = cattrs.Converter()

VERBS = (
    "spawn",
    "migrate_disk_and_power_off",
    "finish_migration",
    "confirm_migration",
    "finish_revert_migration",
    "destroy",
    "power_on",
    "power_off",
)
"""The driver calls that are logged and can be faulted (``get_info`` is a pure read)."""


class FakeHypervisor:
    """Every fake host's guests, the call log and the armed faults.

    Like Nova's fake driver, it does not support a *migrate* to the same host by default
    (a same-host *resize* works); pass ``DriverCapabilities(supports_migrate_to_same_host=True)``
    to change that.
    """

    def __init__(
        self,
        hosts: Iterable[str] = (),
        capabilities: DriverCapabilities | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.capabilities = capabilities or DriverCapabilities()
        self._state_file = state_file
        self._guests: dict[str, dict[str, FakeGuest]] = {h: {} for h in hosts}
        if state_file is not None and state_file.exists():
            saved = json.loads(state_file.read_text(encoding="utf-8"))
            for host, guests in saved.items():
                self._guests[host] = {
                    uuid: _converter.structure(data, FakeGuest) for uuid, data in guests.items()
                }
        self._drivers: dict[str, FakeDriver] = {}
        self._faults: list[FakeFault] = []
        self.calls: list[DriverCall] = []
        self.faults_armed = 0
        """How many faults were ever armed (fired or not): 0 means nothing was injected."""

    # -- set-up and inspection ------------------------------------------------------------

    def add_host(self, host: str) -> FakeDriver:
        self._guests.setdefault(host, {})
        self._persist()
        return self.driver(host)

    def driver(self, host: str) -> FakeDriver:
        """The driver of ``host`` (created on first use)."""
        if host not in self._guests:
            raise HypervisorError(f"fake hypervisor has no host {host!r}")
        if host not in self._drivers:
            self._drivers[host] = FakeDriver(self, host)
        return self._drivers[host]

    def guest(self, host: str, uuid: str) -> FakeGuest | None:
        return self._guests.get(host, {}).get(uuid)

    def domains(self) -> dict[str, list[str]]:
        """uuids of the guests defined on each host."""
        return {host: sorted(guests) for host, guests in sorted(self._guests.items())}

    def guests_by_host(self) -> dict[str, list[FakeGuest]]:
        """The guests defined on each host: what :meth:`domains` lists (hosts by name,
        guests by uuid), with the guests themselves."""
        return {
            host: [guests[uuid] for uuid in sorted(guests)]
            for host, guests in sorted(self._guests.items())
        }

    def arm(self, fault: FakeFault) -> None:
        """Arm ``fault``; it fires on the next ``fault.times`` matching calls."""
        if fault.call not in VERBS:
            raise ValueError(f"unknown driver call {fault.call!r}; one of {', '.join(VERBS)}")
        if fault.host not in self._guests:
            raise ValueError(f"unknown host {fault.host!r}")
        self._faults.append(fault)
        self.faults_armed += 1

    @property
    def armed(self) -> tuple[FakeFault, ...]:
        return tuple(self._faults)

    def snapshot(self) -> tuple[object, ...]:
        """The guests, armed faults (and how many were ever armed) and the call log, as a
        value later calls do not change.

        Guests, faults and logged calls are frozen values: they are shared, and only the
        containers are copied. The drivers hold no state of their own.
        """
        return (
            {host: dict(guests) for host, guests in self._guests.items()},
            tuple(self._faults),
            tuple(self.calls),
            self.faults_armed,
        )

    def restore(self, snapshot: tuple[object, ...]) -> None:
        """Make guests, armed faults and the call log what they were at ``snapshot``
        (which stays usable). With a ``state_file``, the file is written again."""
        guests = cast("dict[str, dict[str, FakeGuest]]", snapshot[0])
        faults = cast("tuple[FakeFault, ...]", snapshot[1])
        calls = cast("tuple[DriverCall, ...]", snapshot[2])
        self.faults_armed = cast(int, snapshot[3])
        self._guests = {host: dict(on_host) for host, on_host in guests.items()}
        self._faults = list(faults)
        self.calls = list(calls)
        self._persist()

    # -- used by FakeDriver ---------------------------------------------------------------

    def enter(self, host: str, call: str, instance: str) -> None:
        """Log a call, then raise if a fault is armed for it."""
        record = DriverCall(host, call, instance)
        self.calls.append(record)
        for index, fault in enumerate(self._faults):
            if fault.matches(record):
                if fault.times <= 1:
                    del self._faults[index]
                else:
                    self._faults[index] = attrs.evolve(fault, times=fault.times - 1)
                fault.fire()

    def put(self, host: str, guest: FakeGuest) -> None:
        self._guests[host][guest.uuid] = guest
        self._persist()

    def remove(self, host: str, uuid: str) -> FakeGuest | None:
        gone = self._guests[host].pop(uuid, None)
        self._persist()
        return gone

    def _persist(self) -> None:
        """With a ``state_file``, the guests survive the process (for crash tests)."""
        if self._state_file is None:
            return
        data = {
            host: {uuid: _converter.unstructure(g) for uuid, g in guests.items()}
            for host, guests in self._guests.items()
        }
        partial = self._state_file.with_suffix(".partial")
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, self._state_file)

    def require(self, host: str, uuid: str, call: str) -> FakeGuest:
        guest = self.guest(host, uuid)
        if guest is None:
            raise HypervisorError(f"{call}: no guest {uuid} on host {host}")
        return guest


class FakeDriver:
    """The :class:`~coldmig_fsm.drivers.HypervisorDriver` of one fake host."""

    def __init__(self, hypervisor: FakeHypervisor, host: str) -> None:
        self._hv = hypervisor
        self._host = host

    @property
    def host(self) -> str:
        return self._host

    @property
    def capabilities(self) -> DriverCapabilities:
        return self._hv.capabilities

    def spawn(self, instance: Instance, flavor: Flavor, power_on: bool) -> None:
        self._hv.enter(self._host, "spawn", instance.uuid)
        state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        self._hv.put(
            self._host,
            FakeGuest(instance.uuid, state, flavor.vcpus, flavor.ram_mb, flavor.root_gb),
        )

    def adopt(self, instance: Instance, flavor: Flavor, power_state: PowerState) -> None:
        """Place a guest in any power state without a driver call (scenario set-up)."""
        self._hv.put(
            self._host,
            FakeGuest(instance.uuid, power_state, flavor.vcpus, flavor.ram_mb, flavor.root_gb),
        )

    def migrate_disk_and_power_off(
        self,
        instance: Instance,
        dest: str,
        flavor: Flavor,
        timeout: float,
        retry_interval: float,
    ) -> DiskInfo:
        self._hv.enter(self._host, "migrate_disk_and_power_off", instance.uuid)
        guest = self._hv.require(self._host, instance.uuid, "migrate_disk_and_power_off")
        if dest not in self._hv.domains():
            raise HypervisorError(f"destination host {dest} is unreachable")
        stopped = attrs.evolve(guest, power_state=PowerState.SHUTDOWN)
        self._hv.put(self._host, stopped)
        return DiskInfo(disks=(f"{instance.uuid}.disk",), bytes_copied=guest.disk_gb * _GIB)

    def finish_migration(
        self,
        instance: Instance,
        migration: Migration,
        disk_info: DiskInfo,
        flavor: Flavor,
        resize_instance: bool,
        power_on: bool,
    ) -> None:
        self._hv.enter(self._host, "finish_migration", instance.uuid)
        state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        backup = None
        if migration.source_compute == self._host:
            backup = self._hv.require(self._host, instance.uuid, "finish_migration")
        self._hv.put(
            self._host,
            FakeGuest(instance.uuid, state, flavor.vcpus, flavor.ram_mb, flavor.root_gb, backup),
        )

    def confirm_migration(self, instance: Instance, migration: Migration) -> None:
        self._hv.enter(self._host, "confirm_migration", instance.uuid)
        if migration.dest_compute == self._host:
            guest = self._hv.require(self._host, instance.uuid, "confirm_migration")
            self._hv.put(self._host, attrs.evolve(guest, backup=None))
        else:
            self._hv.remove(self._host, instance.uuid)

    def finish_revert_migration(
        self, instance: Instance, migration: Migration, power_on: bool
    ) -> None:
        self._hv.enter(self._host, "finish_revert_migration", instance.uuid)
        guest = self._hv.require(self._host, instance.uuid, "finish_revert_migration")
        if guest.backup is not None:
            guest = guest.backup
        state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        self._hv.put(self._host, attrs.evolve(guest, power_state=state))

    def destroy(self, instance: Instance, destroy_disks: bool = True) -> None:
        self._hv.enter(self._host, "destroy", instance.uuid)
        guest = self._hv.guest(self._host, instance.uuid)
        if guest is not None and guest.backup is not None:
            # A same-host move: only the new guest goes; the original stays for the revert.
            self._hv.put(self._host, guest.backup)
        else:
            self._hv.remove(self._host, instance.uuid)

    def power_on(self, instance: Instance) -> None:
        self._hv.enter(self._host, "power_on", instance.uuid)
        guest = self._hv.require(self._host, instance.uuid, "power_on")
        self._hv.put(self._host, attrs.evolve(guest, power_state=PowerState.RUNNING))

    def power_off(self, instance: Instance, timeout: float = 0, retry_interval: float = 0) -> None:
        self._hv.enter(self._host, "power_off", instance.uuid)
        guest = self._hv.require(self._host, instance.uuid, "power_off")
        self._hv.put(self._host, attrs.evolve(guest, power_state=PowerState.SHUTDOWN))

    def get_info(self, instance: Instance) -> GuestInfo:
        guest = self._hv.guest(self._host, instance.uuid)
        return GuestInfo(guest.power_state if guest is not None else PowerState.NOSTATE)

    def list_instances(self) -> list[str]:
        return self._hv.domains()[self._host]
