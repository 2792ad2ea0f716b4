"""The libvirt hosts one cloud moves guests between: host name → driver.

A cold migration involves two hosts: the source's driver creates and fills the target
volumes on the destination, and the destination's driver reads the source guest's
definition. Each :class:`~coldmig_fsm.drivers.libvirt.LibvirtDriver` therefore belongs
to a :class:`LibvirtFabric`, through which it finds the other hosts' drivers (each with
its own connection, opened on first use); the fabric also closes every connection at the
end and builds a :class:`~coldmig_fsm.Cloud` over its hosts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from coldmig_fsm.clock import Clock
from coldmig_fsm.drivers.base import HypervisorDriver
from coldmig_fsm.drivers.libvirt.hosts import read_hosts_env
from coldmig_fsm.drivers.libvirt.transport import DiskTransport, LocalCopyTransport
from coldmig_fsm.exceptions import HypervisorError
from coldmig_fsm.records import CloudConfig, Flavor, Host, Resources
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.stores.memory import Store

if TYPE_CHECKING:
    from coldmig_fsm.drivers.libvirt.driver import LibvirtDriver

__all__ = ["LibvirtFabric"]


class LibvirtFabric:
    """The libvirt hosts one cloud can move guests between: host name → driver.

    Example::

        fabric = LibvirtFabric()
        a = fabric.add_host("host-a", "qemu+ssh://a/system", Path("/var/lib/coldmig"),
                            VolumeStreamTransport())
        b = fabric.add_host("host-b", "qemu+ssh://b/system", Path("/var/lib/coldmig"),
                            VolumeStreamTransport())
        cloud = Cloud({"host-a": a, "host-b": b})
    """

    def __init__(self) -> None:
        self._drivers: dict[str, LibvirtDriver] = {}

    def add_host(
        self,
        host: str,
        uri: str,
        image_dir: PurePath | str,
        transport: DiskTransport,
        **options: Any,
    ) -> LibvirtDriver:
        """Create the driver of ``host`` and register it here (options: see the driver)."""
        # driver.py imports this module (a driver's default fabric): import it when used.
        from coldmig_fsm.drivers.libvirt.driver import LibvirtDriver  # noqa: PLC0415

        return LibvirtDriver(host, uri, image_dir, transport, fabric=self, **options)

    def register(self, driver: LibvirtDriver) -> None:
        """Add ``driver`` under its host's name (a driver registers itself when made).

        Raises:
            ValueError: another driver is registered for that host.
        """
        if driver.host in self._drivers and self._drivers[driver.host] is not driver:
            raise ValueError(f"host {driver.host!r} is already in this fabric")
        self._drivers[driver.host] = driver

    def driver(self, host: str) -> LibvirtDriver:
        """The driver of ``host``.

        Raises:
            HypervisorError: no such host in this fabric.
        """
        try:
            return self._drivers[host]
        except KeyError:
            raise HypervisorError(f"no libvirt host {host!r} in this fabric") from None

    @property
    def drivers(self) -> dict[str, LibvirtDriver]:
        """A copy of the map host name → driver."""
        return dict(self._drivers)

    def cloud(
        self,
        flavors: Iterable[Flavor] = (),
        *,
        capacity: Resources | None = None,
        store: Store | None = None,
        config: CloudConfig | None = None,
        clock: Clock | None = None,
    ) -> Cloud:
        """A :class:`~coldmig_fsm.Cloud` whose compute hosts are this fabric's hosts.

        Each host is recorded with ``capacity``, or else with what libvirt reports (CPUs,
        memory, the image directory's size); ``flavors`` are added to the store.
        """
        drivers: dict[str, HypervisorDriver] = dict(self._drivers)
        cloud = Cloud(drivers, store=store, config=config, clock=clock)
        with cloud.store.atomic():
            for name, driver in sorted(self._drivers.items()):
                size = capacity if capacity is not None else driver.resources()
                cloud.store.put_host(Host(name, size.vcpus, size.ram_mb, size.disk_gb))
            for flavor in flavors:
                cloud.store.put_flavor(flavor)
        return cloud

    def close(self) -> None:
        """Close every host's connection."""
        for driver in self._drivers.values():
            driver.close()

    @classmethod
    def from_env_file(
        cls, path: Path | str, transport: DiskTransport | None = None, **options: Any
    ) -> LibvirtFabric:
        """The hosts written by ``scripts/libvirt-hosts.sh start`` (its ``hosts.env``)."""
        fabric = cls()
        for name, (uri, images) in read_hosts_env(path).items():
            fabric.add_host(name, uri, images, transport or LocalCopyTransport(), **options)
        return fabric
