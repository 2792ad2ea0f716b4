"""The hypervisor driver contract: Nova's verbs as a typed ``Protocol``.

A driver manages the guests of *one* compute host. The compute role calls it; it never
touches the store. Each method states what a real hypervisor does, so that a driver
author knows what to implement and the fake driver can be checked against it.

A driver signals failure by raising :class:`~coldmig_fsm.exceptions.HypervisorError`
(or a subclass). Raising :class:`~coldmig_fsm.exceptions.InstanceFaultRollback` means
"I failed, but the guest is exactly as it was": the move is then rolled back instead of
putting the instance in ``error``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

from coldmig_fsm.records import Flavor, Instance, Migration
from coldmig_fsm.states import PowerState

__all__ = ["DiskInfo", "DriverCapabilities", "GuestInfo", "HypervisorDriver"]


@attrs.frozen
class DriverCapabilities:
    """What a driver can do.

    Attributes:
        supports_migrate_to_same_host: the driver can "move" a guest to its own host
            (needed for a resize with ``allow_resize_to_same_host``); when false,
            ``prep_resize`` refuses such a move with ``UnableToMigrateToSelf``.
        has_real_disks: the driver copies real disk images (progress is in bytes).
    """

    supports_migrate_to_same_host: bool = False
    has_real_disks: bool = False


@attrs.frozen
class GuestInfo:
    """What the hypervisor reports about one guest."""

    power_state: PowerState


@attrs.frozen
class DiskInfo:
    """What ``migrate_disk_and_power_off`` hands to ``finish_migration``.

    ``disks`` names the copied disk images (driver-specific); ``bytes_copied`` their total.
    """

    disks: tuple[str, ...] = ()
    bytes_copied: int = 0


@runtime_checkable
class HypervisorDriver(Protocol):
    """One compute host's hypervisor."""

    @property
    def host(self) -> str:
        """The compute host this driver manages."""
        ...

    @property
    def capabilities(self) -> DriverCapabilities: ...

    def spawn(self, instance: Instance, flavor: Flavor, power_on: bool) -> None:
        """Create the guest of ``instance`` with ``flavor``; start it only if ``power_on``."""
        ...

    def migrate_disk_and_power_off(
        self,
        instance: Instance,
        dest: str,
        flavor: Flavor,
        timeout: float,
        retry_interval: float,
    ) -> DiskInfo:
        """On the source: stop the guest and copy its disks to ``dest``.

        Clean shutdown first, for up to ``timeout`` seconds (asking again every
        ``retry_interval``), then a hard power-off. The source guest stays defined, with
        its disks, until ``confirm_migration``. Already stopped guests are not started.
        """
        ...

    def finish_migration(
        self,
        instance: Instance,
        migration: Migration,
        disk_info: DiskInfo,
        flavor: Flavor,
        resize_instance: bool,
        power_on: bool,
    ) -> None:
        """On the destination: define the guest from the copied disks with ``flavor``.

        ``resize_instance`` is true when the flavor changed (grow the root disk). The
        guest is started only when ``power_on``.
        """
        ...

    def confirm_migration(self, instance: Instance, migration: Migration) -> None:
        """On the source: remove the source guest and its disks for good."""
        ...

    def finish_revert_migration(
        self, instance: Instance, migration: Migration, power_on: bool
    ) -> None:
        """On the source: bring the original guest back; start it only when ``power_on``."""
        ...

    def destroy(self, instance: Instance, destroy_disks: bool = True) -> None:
        """Remove the guest from this host (and its disks when ``destroy_disks``).

        Destroying a guest that is not there is not an error.
        """
        ...

    def power_on(self, instance: Instance) -> None: ...

    def power_off(self, instance: Instance, timeout: float = 0, retry_interval: float = 0) -> None:
        """Clean shutdown for up to ``timeout`` seconds, then a hard power-off."""
        ...

    def get_info(self, instance: Instance) -> GuestInfo:
        """The guest's power state; ``NOSTATE`` when this host has no such guest."""
        ...

    def list_instances(self) -> list[str]:
        """uuids of the guests defined on this host, sorted."""
        ...
