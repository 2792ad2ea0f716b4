"""The libvirt hypervisor driver: cold migration and resize of real guests.

:class:`LibvirtDriver` implements :class:`~coldmig_fsm.drivers.HypervisorDriver` for one
libvirt host (one connection, opened on first use, kept, and reopened when it died). A
cold migration needs two hosts, so each driver belongs to a
:class:`~coldmig_fsm.drivers.libvirt.fabric.LibvirtFabric`, through which the source's
driver reaches the destination (to create and fill the target volumes) and the
destination's driver reads the source guest's definition. The guest's and its disks'
names and XML come from :mod:`~coldmig_fsm.drivers.libvirt.domain`; the bytes of a disk
travel through a :mod:`~coldmig_fsm.drivers.libvirt.transport`.

What lives where on a host: the guest of an instance is the libvirt domain whose UUID is
the instance's uuid (the domains this driver creates are named ``coldmig-<uuid>``); its
disks are volumes of the host's ``coldmig`` storage pool, a ``dir`` pool on the host's
image directory, named ``<uuid>-disk<N>.qcow2``.

Safety: every name is built from a validated uuid; a path read from a domain definition is
only copied or deleted when it lies directly in the image directory; no shell is run.

Errors: every libvirt failure becomes a :class:`~coldmig_fsm.exceptions.HypervisorError`
naming the host and the step. ``migrate_disk_and_power_off`` raises
:class:`~coldmig_fsm.exceptions.InstanceFaultRollback` when the guest is as it was: a resize
would shrink the root disk, or the destination is unreachable or cannot take the disks (all
checked *before* the guest is stopped), or the copy failed and the guest was brought back
to its power state (the half-written copy is removed first).

Why one module of some 700 lines: it is one class, the driver, whose calls share its
connection, its storage pool and its step wrapper, and call those of the peer driver on
the other host; split further, each part would reach into the others' private state.
What is not the driver's own (names and XML, the fabric, the transports, the hosts file)
lives in the sibling modules.

Importing this module installs a silent libvirt error handler: libvirt would otherwise
print every error to stderr, and this driver reports each one as an exception.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePath, PurePosixPath
from typing import Any

import attrs
import libvirt

from coldmig_fsm.drivers.base import DiskInfo, DriverCapabilities, GuestInfo
from coldmig_fsm.drivers.libvirt.domain import (
    DISK_NAME,
    GIB,
    POOL_NAME,
    Disk,
    checked_uuid,
    disk_name,
    domain_xml,
    file_disks,
    gib,
    pool_xml,
    rewrite_domain,
    root_bytes,
    volume_xml,
)
from coldmig_fsm.drivers.libvirt.fabric import LibvirtFabric
from coldmig_fsm.drivers.libvirt.hosts import read_hosts_env
from coldmig_fsm.drivers.libvirt.transport import (
    DiskCopy,
    DiskTransport,
    LocalCopyTransport,
    ProgressCallback,
    VolumeStreamTransport,
)
from coldmig_fsm.exceptions import HypervisorError, InstanceFaultRollback, UnableToMigrateToSelf
from coldmig_fsm.records import Flavor, Instance, Migration, Resources
from coldmig_fsm.states import PowerState

# DiskTransport, LibvirtFabric, LocalCopyTransport, VolumeStreamTransport and
# read_hosts_env are the sibling modules': still importable from here, where they were
# before the package was split (benchmarks/bench_libvirt.py imports them so); new code
# imports them from coldmig_fsm.drivers.libvirt.
__all__ = [
    "DiskTransport",
    "GuestDescription",
    "LibvirtDriver",
    "LibvirtFabric",
    "LocalCopyTransport",
    "MigrationProgress",
    "VolumeStreamTransport",
    "read_hosts_env",
]

log = logging.getLogger(__name__)


def _ignore_libvirt_error(_context: object, _error: object) -> None:
    """libvirt's default handler prints each error; the driver raises them instead."""


libvirt.registerErrorHandler(_ignore_libvirt_error, None)

_CAPABILITIES = DriverCapabilities(supports_migrate_to_same_host=False, has_real_disks=True)

_POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.RUNNING,  # asked to shut down, still running
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}


@attrs.frozen
class MigrationProgress:
    """One progress report of a driver step.

    ``phase`` is ``shutdown``, ``copy``, ``define``, ``grow``, ``start`` or ``cleanup``;
    ``done``/``total`` count bytes for ``copy`` and 0/1 (begun/finished) otherwise.
    """

    host: str
    instance: str
    phase: str
    done: int
    total: int
    detail: str = ""


ProgressListener = Callable[[MigrationProgress], None]


@attrs.frozen
class GuestDescription:
    """An existing guest as :meth:`LibvirtDriver.describe_guest` reports it."""

    uuid: str
    name: str
    vcpus: int
    ram_mb: int
    root_gb: int
    running: bool


def _wrap(host: str, action: str, error: libvirt.libvirtError) -> HypervisorError:
    return HypervisorError(f"{host}: {action}: {error.get_error_message() or error}")


def _is_missing(error: libvirt.libvirtError, *codes: int) -> bool:
    return error.get_error_code() in codes


class LibvirtDriver:
    """The :class:`~coldmig_fsm.drivers.HypervisorDriver` of one libvirt host.

    Args:
        host: the compute host's name (as the cloud knows it).
        uri: libvirt URI of that host (``qemu+ssh://...``, ``qemu+unix:///system?socket=``,
            ``test:///path/node.xml`` for tests).
        image_dir: absolute directory *on that host* for the guests' disks (the
            ``coldmig`` storage pool is defined there when missing).
        transport: how this host sends disks to a destination.
        fabric: the other hosts (default: a fabric of this host alone).
        domain_type: ``<domain type>`` of the guests it creates (``qemu`` = TCG,
            ``kvm``); default: ``test`` on the test driver, else ``qemu``.
        poll_interval: seconds between power-state checks while shutting down.
        progress: called with a :class:`MigrationProgress` at each step.
        open_connection: opens a URI (default ``libvirt.open``).
    """

    def __init__(
        self,
        host: str,
        uri: str,
        image_dir: PurePath | str,
        transport: DiskTransport,
        *,
        fabric: LibvirtFabric | None = None,
        domain_type: str | None = None,
        poll_interval: float = 0.05,
        progress: ProgressListener | None = None,
        open_connection: Callable[[str], Any] = libvirt.open,
    ) -> None:
        image = PurePosixPath(str(image_dir))
        if not image.is_absolute() or ".." in image.parts:
            raise ValueError(f"image_dir must be an absolute path without '..': {image_dir}")
        self._host = host
        self.uri = uri
        self.image_dir = image
        self.transport = transport
        self.domain_type = domain_type
        self.poll_interval = poll_interval
        self.progress = progress
        self._open = open_connection
        self._conn: Any = None
        self.fabric = fabric if fabric is not None else LibvirtFabric()
        self.fabric.register(self)

    def __repr__(self) -> str:
        return f"LibvirtDriver({self._host!r}, {self.uri!r}, {str(self.image_dir)!r})"

    # -- connection, pool, lookups ------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def capabilities(self) -> DriverCapabilities:
        return _CAPABILITIES

    def connection(self) -> Any:
        """This host's ``virConnect``: opened once, reopened only when it died.

        Raises:
            HypervisorError: the host does not answer.
        """
        if self._conn is not None:
            try:
                if self._conn.isAlive():
                    return self._conn
            except libvirt.libvirtError:
                pass
            self._conn = None
        try:
            self._conn = self._open(self.uri)
        except libvirt.libvirtError as error:
            raise HypervisorError(
                f"{self._host}: cannot connect to {self.uri}: {error.get_error_message()}"
            ) from error
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):  # dead is closed enough
                self._conn.close()
            self._conn = None

    @contextmanager
    def _step(self, action: str) -> Iterator[None]:
        """Turn a libvirt error raised inside into a HypervisorError naming the step."""
        try:
            yield
        except libvirt.libvirtError as error:
            raise _wrap(self._host, action, error) from error

    def _emit(self, instance: str, phase: str, done: int, total: int, detail: str = "") -> None:
        if self.progress is not None:
            self.progress(MigrationProgress(self._host, instance, phase, done, total, detail))

    def pool(self) -> Any:
        """The ``coldmig`` storage pool on the image directory (created, started, refreshed)."""
        conn = self.connection()
        with self._step("storage pool"):
            try:
                pool = conn.storagePoolLookupByName(POOL_NAME)
            except libvirt.libvirtError as error:
                if not _is_missing(error, libvirt.VIR_ERR_NO_STORAGE_POOL):
                    raise
                pool = self._define_pool(conn)
            target = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
            if target is None or posixpath.normpath(target) != str(self.image_dir):
                raise HypervisorError(
                    f"{self._host}: storage pool {POOL_NAME!r} is at {target}, "
                    f"not at the image directory {self.image_dir}"
                )
            if not pool.isActive():
                pool.create(0)
            pool.refresh(0)
        return pool

    def _define_pool(self, conn: Any) -> Any:
        pool = conn.storagePoolDefineXML(pool_xml(self.image_dir), 0)
        pool.build(0)  # mkdir -p; nothing when it exists
        pool.setAutostart(1)
        return pool

    def _domain(self, uuid: str) -> Any | None:
        with self._step("look up guest"):
            try:
                return self.connection().lookupByUUIDString(uuid)
            except libvirt.libvirtError as error:
                if _is_missing(error, libvirt.VIR_ERR_NO_DOMAIN):
                    return None
                raise

    def _require(self, uuid: str, call: str) -> Any:
        domain = self._domain(uuid)
        if domain is None:
            raise HypervisorError(f"{self._host}: {call}: no guest {uuid} on this host")
        return domain

    def _disks(self, xml: str) -> list[Disk]:
        """The file disks of a domain definition (CD-ROMs and floppies are left out)."""
        return file_disks(xml, self._host)

    def _in_image_dir(self, path: str) -> bool:
        normal = PurePosixPath(posixpath.normpath(path))
        return normal.parent == self.image_dir and normal.name not in ("", ".", "..")

    def _volume(self, pool: Any, name: str) -> Any | None:
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError as error:
            if _is_missing(error, libvirt.VIR_ERR_NO_STORAGE_VOL):
                return None
            raise

    def _owned_volumes(self, pool: Any, uuid: str) -> list[Any]:
        """Volumes named after instance ``uuid`` (``<uuid>-diskN.qcow2``)."""
        found = []
        for name in pool.listVolumes():
            match = DISK_NAME.match(name)
            if match is not None and match["uuid"] == uuid:
                found.append(pool.storageVolLookupByName(name))
        return found

    def _delete_disks(self, uuid: str, paths: list[str]) -> None:
        """Delete the instance's volumes: ``paths`` in the image dir, and uuid-named ones."""
        pool = self.pool()
        with self._step("delete disks"):
            volumes = {v.name(): v for v in self._owned_volumes(pool, uuid)}
            for path in paths:
                if not self._in_image_dir(path):
                    log.warning("%s: not deleting %s: outside %s", self._host, path, self.image_dir)
                    continue
                volume = self._volume(pool, PurePosixPath(path).name)
                if volume is not None:
                    volumes[volume.name()] = volume
            for volume in volumes.values():
                volume.delete(0)

    def _guest_type(self, conn: Any) -> str:
        if self.domain_type is not None:
            return self.domain_type
        return "test" if str(conn.getType()).lower() == "test" else "qemu"

    # -- power --------------------------------------------------------------------------

    def _stop(self, domain: Any, uuid: str, timeout: float, retry_interval: float) -> bool:
        """Clean shutdown for up to ``timeout`` s (asking every ``retry_interval``), then
        destroy. Returns True when the guest shut down cleanly."""
        with self._step("power off"):
            if not domain.isActive():
                return True
            self._emit(uuid, "shutdown", 0, 1, f"clean shutdown, up to {timeout:g} s")
            deadline = time.monotonic() + max(timeout, 0)
            next_request = time.monotonic()
            while time.monotonic() < deadline:
                if time.monotonic() >= next_request:
                    try:
                        domain.shutdown()
                    except libvirt.libvirtError:
                        if not domain.isActive():
                            break  # it went down between the check and the request
                        raise
                    next_request = time.monotonic() + max(retry_interval, self.poll_interval)
                time.sleep(self.poll_interval)
                if not domain.isActive():
                    self._emit(uuid, "shutdown", 1, 1, "shut down cleanly")
                    return True
            if not domain.isActive():
                self._emit(uuid, "shutdown", 1, 1, "shut down cleanly")
                return True
            try:
                domain.destroy()
            except libvirt.libvirtError:
                if domain.isActive():
                    raise
            self._emit(uuid, "shutdown", 1, 1, "powered off (destroy)")
            return False

    def _start(self, domain: Any, uuid: str) -> None:
        with self._step("power on"):
            state = domain.state()[0]
            if state == libvirt.VIR_DOMAIN_PAUSED:
                domain.resume()
            elif not domain.isActive():
                self._emit(uuid, "start", 0, 1)
                domain.create()
                self._emit(uuid, "start", 1, 1)

    # -- the Protocol -------------------------------------------------------------------

    def spawn(self, instance: Instance, flavor: Flavor, power_on: bool) -> None:
        """Create the guest (a fresh root disk of the flavor's size); start it if ``power_on``.

        A guest already defined with the instance's uuid is taken as it is (only its power
        state is set), so that an existing libvirt guest can be brought under the cloud.
        """
        uuid = checked_uuid(instance.uuid)
        existing = self._domain(uuid)
        if existing is not None:
            self._set_power(existing, uuid, power_on)
            return
        conn = self.connection()
        pool = self.pool()
        name = disk_name(uuid, 0)
        size = root_bytes(flavor)
        volume = None
        try:
            with self._step("create root disk"):
                if self._volume(pool, name) is not None:
                    raise HypervisorError(f"{self._host}: disk {name} already exists")
                volume = pool.createXML(volume_xml(name, size), 0)
            with self._step("define guest"):
                domain = conn.defineXML(
                    domain_xml(self._guest_type(conn), uuid, flavor, str(volume.path()))
                )
        except HypervisorError:
            if volume is not None:
                with self._step("clean up root disk"):
                    volume.delete(0)
            raise
        if power_on:
            self._start(domain, uuid)

    def _set_power(self, domain: Any, uuid: str, power_on: bool) -> None:
        if power_on:
            self._start(domain, uuid)
        else:
            self._stop(domain, uuid, 0, 0)

    def migrate_disk_and_power_off(
        self,
        instance: Instance,
        dest: str,
        flavor: Flavor,
        timeout: float,
        retry_interval: float,
    ) -> DiskInfo:
        """Check the move, stop the guest, copy its disks to ``dest``; return their names.

        ``flavor`` is the flavor the guest will have there; when it is not the instance's
        current flavor (a resize), its root disk must not be smaller than the guest's.

        Raises:
            InstanceFaultRollback: nothing changed on either host: the resize would shrink
                the root disk, the destination is unreachable or not writable, a disk lies
                outside the image directory; or the copy failed, was cleaned up and the
                guest is back in its power state.
            HypervisorError: the guest could not be stopped or brought back.
        """
        uuid = checked_uuid(instance.uuid)
        if dest == self._host:
            raise UnableToMigrateToSelf(f"{self._host}: cannot migrate {uuid} to its own host")
        domain = self._require(uuid, "migrate_disk_and_power_off")
        try:
            with self._step("read guest"):
                was_running = bool(domain.isActive())
                disks = self._disks(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            sources = self._source_volumes(disks)
            if flavor.id != instance.flavor:
                self._refuse_shrink(uuid, flavor, sources)
            target = self.fabric.driver(dest)
            copies = self._prepare_copies(target, uuid, sources)
        except HypervisorError as error:
            raise InstanceFaultRollback(error) from error
        try:
            self._stop(domain, uuid, timeout, retry_interval)
        except HypervisorError:
            target.discard_volumes(uuid, [c.target for c in copies])
            raise
        try:
            moved = self._copy(uuid, copies)
        except HypervisorError as error:
            target.discard_volumes(uuid, [c.target for c in copies])
            if was_running:
                self._start(domain, uuid)  # a failure here leaves a plain HypervisorError
            raise InstanceFaultRollback(error) from error
        with target._step("refresh pool"):
            target.pool()
        return DiskInfo(disks=tuple(str(c.target.name()) for c in copies), bytes_copied=moved)

    def _source_volumes(self, disks: list[Disk]) -> list[tuple[Disk, Any]]:
        """The volume of each disk of the guest (the root disk first), read only."""
        source_pool = self.pool()
        sources = []
        with self._step("find source disks"):
            for disk in disks:
                if not self._in_image_dir(disk.path):
                    raise HypervisorError(
                        f"{self._host}: disk {disk.path} is not in the image directory "
                        f"{self.image_dir}; it cannot be moved"
                    )
                volume = self._volume(source_pool, PurePosixPath(disk.path).name)
                if volume is None:
                    raise HypervisorError(f"{self._host}: disk {disk.path} does not exist")
                sources.append((disk, volume))
        return sources

    def _refuse_shrink(self, uuid: str, flavor: Flavor, sources: list[tuple[Disk, Any]]) -> None:
        """A resize must not make the root disk smaller than it is (as in Nova's driver).

        A disk image cannot be shrunk without losing what lies past its new end, so Nova's
        libvirt driver refuses before it touches the guest ("Unable to resize disk down.").
        The guest's real root disk is compared, not its flavor: an adopted guest's disk may
        be bigger than its flavor says. Only a resize is checked: a move that keeps the
        flavor never resizes the disk.

        Raises:
            HypervisorError: the flavor's root disk is smaller than the guest's.
        """
        if not sources:
            return
        disk, root = sources[0]
        with self._step("size root disk"):
            current = int(root.info()[1])
        wanted = root_bytes(flavor)
        if wanted < current:
            raise HypervisorError(
                f"{self._host}: Unable to resize disk down: the root disk of {uuid} "
                f"({disk.target or disk.path}) is {gib(current)}, flavor {flavor.id} has "
                f"{gib(wanted)}; a disk image cannot be shrunk"
            )

    def _prepare_copies(
        self, target: LibvirtDriver, uuid: str, sources: list[tuple[Disk, Any]]
    ) -> list[DiskCopy]:
        """Create an empty target volume on ``target`` for each source volume.

        Everything here happens before the guest is touched; on failure what was created
        on the destination is removed again.
        """
        if target._domain(uuid) is not None:
            raise HypervisorError(f"{target.host}: a guest {uuid} is already defined there")
        target_pool = target.pool()
        created: list[Any] = []
        try:
            with target._step("create target disks"):
                for volume in target._owned_volumes(target_pool, uuid):
                    volume.delete(0)  # left over from an earlier failed attempt
                for index, (disk, source) in enumerate(sources):
                    capacity = int(source.info()[1])
                    name = disk_name(uuid, index)
                    created.append(
                        target_pool.createXML(volume_xml(name, capacity, disk.format), 0)
                    )
        except HypervisorError:
            target.discard_volumes(uuid, created)
            raise
        copies = []
        with self._step("size source disks"):
            for (disk, source), volume in zip(sources, created, strict=True):
                size = _physical_size(source)
                copies.append(DiskCopy(source, volume, disk.format, size))
        return copies

    def _copy(self, uuid: str, copies: list[DiskCopy]) -> int:
        total = sum(c.size for c in copies)
        base = 0
        moved = 0
        for copy in copies:

            def report(done: int, _size: int, base: int = base) -> None:
                self._emit(uuid, "copy", base + done, total, self.transport.name)

            progress: ProgressCallback = report
            try:
                moved += self.transport.copy(copy, progress)
            except libvirt.libvirtError as error:
                raise _wrap(self._host, "copy disk", error) from error
            base += copy.size
        return moved

    def discard_volumes(self, uuid: str, volumes: list[Any]) -> None:
        """Best-effort removal of half-written target volumes (after a failure)."""
        for volume in volumes:
            try:
                volume.delete(0)
            except libvirt.libvirtError as error:
                log.warning("%s: could not remove %s of %s: %s", self._host, volume, uuid, error)
        self._emit(uuid, "cleanup", 1, 1, f"removed {len(volumes)} half-copied disk(s)")

    def finish_migration(
        self,
        instance: Instance,
        migration: Migration,
        disk_info: DiskInfo,
        flavor: Flavor,
        resize_instance: bool,
        power_on: bool,
    ) -> None:
        """Define the guest here from the copied disks with ``flavor``'s vCPUs and memory.

        The definition is the source guest's, read from the source host, with this host's
        disk paths; the root disk grows to the flavor's size when ``resize_instance``.
        """
        uuid = checked_uuid(instance.uuid)
        names = list(disk_info.disks)
        expected = [disk_name(uuid, i) for i in range(len(names))]
        if not names or names != expected:
            raise HypervisorError(
                f"{self._host}: finish_migration: unexpected disk names {names!r} for {uuid}"
            )
        if self._domain(uuid) is not None:
            raise HypervisorError(f"{self._host}: a guest {uuid} is already defined here")
        source = self.fabric.driver(migration.source_compute)
        source_domain = source._require(uuid, "finish_migration (read the source guest)")
        with source._step("read source guest"):
            source_xml = str(source_domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        pool = self.pool()
        with self._step("find copied disks"):
            volumes = []
            for name in names:
                volume = self._volume(pool, name)
                if volume is None:
                    raise HypervisorError(f"{self._host}: copied disk {name} is missing")
                volumes.append(volume)
            paths = [str(v.path()) for v in volumes]
        want = flavor.root_gb * GIB
        if resize_instance and want > int(volumes[0].info()[1]):
            self._emit(uuid, "grow", 0, 1, f"root disk to {flavor.root_gb} GiB")
            with self._step("grow root disk"):
                volumes[0].resize(want, 0)
            self._emit(uuid, "grow", 1, 1)
        xml = rewrite_domain(source_xml, flavor, paths)
        self._emit(uuid, "define", 0, 1)
        with self._step("define guest"):
            domain = self.connection().defineXML(xml)
        self._emit(uuid, "define", 1, 1)
        if power_on:
            self._start(domain, uuid)

    def confirm_migration(self, instance: Instance, migration: Migration) -> None:
        """Undefine the source guest and delete its disks (this host is the source)."""
        uuid = checked_uuid(instance.uuid)
        if migration.dest_compute == self._host:
            return  # a same-host move is never made by this driver: nothing to drop
        self._remove(uuid, destroy_disks=True)

    def finish_revert_migration(
        self, instance: Instance, migration: Migration, power_on: bool
    ) -> None:
        """Remove what the destination got; bring the source guest back here.

        The destination's guest and disks are removed when that host answers (it usually
        already did it in ``destroy``); if it does not, that is logged, not raised: the
        guest's way back must not depend on the host it is leaving.
        """
        uuid = checked_uuid(instance.uuid)
        dest = migration.dest_compute
        if dest is not None and dest != self._host:
            try:
                self.fabric.driver(dest).destroy(instance, destroy_disks=True)
            except HypervisorError as error:
                log.warning("%s: could not clean %s of %s: %s", self._host, dest, uuid, error)
        domain = self._require(uuid, "finish_revert_migration")
        self._set_power(domain, uuid, power_on)

    def destroy(self, instance: Instance, destroy_disks: bool = True) -> None:
        self._remove(checked_uuid(instance.uuid), destroy_disks)

    def _remove(self, uuid: str, destroy_disks: bool) -> None:
        domain = self._domain(uuid)
        paths: list[str] = []
        if domain is not None:
            with self._step("remove guest"):
                paths = [d.path for d in self._disks(domain.XMLDesc(0))]
                if domain.isActive():
                    domain.destroy()
                domain.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                )
        if destroy_disks:
            self._delete_disks(uuid, paths)

    def power_on(self, instance: Instance) -> None:
        uuid = checked_uuid(instance.uuid)
        self._start(self._require(uuid, "power_on"), uuid)

    def power_off(self, instance: Instance, timeout: float = 0, retry_interval: float = 0) -> None:
        uuid = checked_uuid(instance.uuid)
        self._stop(self._require(uuid, "power_off"), uuid, timeout, retry_interval)

    def get_info(self, instance: Instance) -> GuestInfo:
        domain = self._domain(checked_uuid(instance.uuid))
        if domain is None:
            return GuestInfo(PowerState.NOSTATE)
        with self._step("guest state"):
            state = int(domain.state()[0])
        return GuestInfo(_POWER_STATES.get(state, PowerState.NOSTATE))

    def list_instances(self) -> list[str]:
        with self._step("list guests"):
            return sorted(str(d.UUIDString()) for d in self.connection().listAllDomains(0))

    def describe_guest(self, ref: str) -> GuestDescription:
        """A guest of this host by domain name or UUID: what the cloud needs to adopt it."""
        conn = self.connection()
        with self._step(f"find guest {ref!r}"):
            try:
                domain = conn.lookupByUUIDString(checked_uuid(ref))
            except HypervisorError:
                domain = conn.lookupByName(ref)
            root = ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            disks = self._disks(ET.tostring(root, encoding="unicode"))
            size = 0
            if disks:
                volume = conn.storageVolLookupByPath(disks[0].path)
                size = int(volume.info()[1])
            return GuestDescription(
                uuid=str(domain.UUIDString()),
                name=str(domain.name()),
                vcpus=int(root.findtext("vcpu") or 1),
                ram_mb=int(domain.maxMemory()) // 1024,
                root_gb=-(-size // GIB),
                running=bool(domain.isActive()),
            )

    def resources(self) -> Resources:
        """What this host offers: its CPUs and memory, and its image directory's size."""
        with self._step("host info"):
            info = self.connection().getInfo()
            disk = int(self.pool().info()[1]) // GIB
        return Resources(int(info[2]), int(info[1]), disk)

    def domain_xml(self, uuid: str) -> str:
        """The guest's current definition (for inspection and tests)."""
        domain = self._require(checked_uuid(uuid), "domain_xml")
        with self._step("read guest"):
            return str(domain.XMLDesc(0))

    def volumes(self) -> list[str]:
        """Names of the volumes in this host's image directory, sorted."""
        with self._step("list disks"):
            return sorted(str(n) for n in self.pool().listVolumes())


def _physical_size(volume: Any) -> int:
    try:
        info = volume.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)
    except libvirt.libvirtError:
        info = volume.info()
    return int(info[2])
