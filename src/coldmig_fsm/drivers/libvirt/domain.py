"""What the driver's guests and disks are called, and their libvirt XML, built and rewritten.

Pure functions over names and XML text: nothing here talks to a host, so each can be
checked alone. Every name is built from a uuid :func:`checked_uuid` accepted:

- the guest of instance ``<uuid>`` is the domain ``coldmig-<uuid>`` (:func:`guest_name`);
- its disks are the volumes ``<uuid>-disk<N>.qcow2`` (:func:`disk_name`) of the storage
  pool :data:`POOL_NAME`, a ``dir`` pool on the host's image directory.

:func:`guest_name` and :func:`disk_name` are public (``coldmig_fsm.drivers.libvirt``);
the rest serves the driver.
"""

from __future__ import annotations

import re
import uuid as uuidlib
import xml.etree.ElementTree as ET
from pathlib import PurePosixPath

import attrs

from coldmig_fsm.exceptions import HypervisorError
from coldmig_fsm.records import Flavor

__all__ = [
    "DISK_NAME",
    "GIB",
    "POOL_NAME",
    "Disk",
    "checked_uuid",
    "disk_name",
    "domain_xml",
    "file_disks",
    "gib",
    "guest_name",
    "pool_xml",
    "rewrite_domain",
    "root_bytes",
    "volume_xml",
]

POOL_NAME = "coldmig"

GIB = 1024**3
_EMPTY_ROOT_BYTES = 64 * 1024**2
"""Virtual size of the root disk of a flavor with ``root_gb = 0``."""

DISK_NAME = re.compile(r"^(?P<uuid>[0-9a-f-]{36})-disk(?P<index>\d+)\.qcow2$")
"""A volume name :func:`disk_name` made; ``uuid`` and ``index`` are its parts."""


def root_bytes(flavor: Flavor) -> int:
    """The virtual size of a root disk created for ``flavor``."""
    return flavor.root_gb * GIB or _EMPTY_ROOT_BYTES


def gib(size: int) -> str:
    """``size`` bytes as GiB for a message (``1.5 GiB``)."""
    return f"{size / GIB:g} GiB"


def checked_uuid(value: str) -> str:
    """``value`` when it is a uuid in canonical form; names are built from nothing else.

    Raises:
        HypervisorError: ``value`` is not a canonical uuid.
    """
    try:
        parsed = uuidlib.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise HypervisorError(f"not an instance uuid: {value!r}") from None
    if str(parsed) != value:
        raise HypervisorError(f"not an instance uuid in canonical form: {value!r}")
    return str(parsed)


def guest_name(uuid: str) -> str:
    """The libvirt domain name this driver gives the guest of instance ``uuid``."""
    return f"coldmig-{checked_uuid(uuid)}"


def disk_name(uuid: str, index: int) -> str:
    """The volume (file) name of disk ``index`` of instance ``uuid``."""
    if index < 0:
        raise ValueError("disk index must be >= 0")
    return f"{checked_uuid(uuid)}-disk{index}.qcow2"


@attrs.frozen
class Disk:
    """A disk of a domain definition: its path, format and target device."""

    path: str
    format: str
    target: str


def file_disks(xml: str, host: str) -> list[Disk]:
    """The file disks of a domain definition (CD-ROMs and floppies are left out).

    Raises:
        HypervisorError: a disk is not a file (``host`` is named in the message).
    """
    disks = []
    for disk in ET.fromstring(xml).iterfind("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        if disk.get("type") != "file" or path is None:
            raise HypervisorError(
                f"{host}: only file disks can be moved (found a {disk.get('type')!r} disk)"
            )
        driver = disk.find("driver")
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        target = disk.find("target")
        disks.append(Disk(path, fmt, target.get("dev", "") if target is not None else ""))
    return disks


def pool_xml(image_dir: PurePosixPath) -> str:
    """The :data:`POOL_NAME` storage pool: a ``dir`` pool on ``image_dir``."""
    root = ET.Element("pool", type="dir")
    ET.SubElement(root, "name").text = POOL_NAME
    ET.SubElement(ET.SubElement(root, "target"), "path").text = str(image_dir)
    return ET.tostring(root, encoding="unicode")


def volume_xml(name: str, capacity: int, fmt: str = "qcow2") -> str:
    """An empty volume ``name`` of ``capacity`` bytes in format ``fmt``."""
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(capacity)
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=fmt)
    if fmt == "qcow2":
        ET.SubElement(target, "compat").text = "1.1"
    return ET.tostring(root, encoding="unicode")


def domain_xml(domain_type: str, uuid: str, flavor: Flavor, root_path: str) -> str:
    """A minimal guest: the flavor's vCPUs and memory, one virtio root disk, no display."""
    root = ET.Element("domain", type=domain_type)
    ET.SubElement(root, "name").text = guest_name(uuid)
    ET.SubElement(root, "uuid").text = uuid
    ET.SubElement(root, "memory", unit="KiB").text = str(flavor.ram_mb * 1024)
    ET.SubElement(root, "currentMemory", unit="KiB").text = str(flavor.ram_mb * 1024)
    ET.SubElement(root, "vcpu").text = str(flavor.vcpus)
    os_ = ET.SubElement(root, "os")
    ET.SubElement(os_, "type", arch="x86_64").text = "hvm"
    ET.SubElement(os_, "boot", dev="hd")
    devices = ET.SubElement(root, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=root_path)
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    return ET.tostring(root, encoding="unicode")


def rewrite_domain(xml: str, flavor: Flavor, disk_paths: list[str]) -> str:
    """The source definition with ``flavor``'s vCPUs/memory and this host's disk paths.

    Raises:
        HypervisorError: the definition has not as many disks as were copied.
    """
    root = ET.fromstring(xml)
    vcpu = root.find("vcpu")
    if vcpu is None:
        vcpu = ET.SubElement(root, "vcpu")
    vcpu.text = str(flavor.vcpus)
    vcpu.attrib.pop("current", None)
    cpu = root.find("cpu")
    if cpu is not None:
        for topology in cpu.findall("topology"):  # it would contradict the new vCPU count
            cpu.remove(topology)
    for tag in ("memory", "currentMemory"):
        element = root.find(tag)
        if element is None:
            element = ET.SubElement(root, tag)
        element.text = str(flavor.ram_mb * 1024)
        element.attrib.clear()
        element.set("unit", "KiB")
    for extra in root.findall("maxMemory"):
        root.remove(extra)
    disks = [d for d in root.iterfind("devices/disk") if d.get("device", "disk") == "disk"]
    if len(disks) != len(disk_paths):
        raise HypervisorError(
            f"the source guest has {len(disks)} disks but {len(disk_paths)} were copied"
        )
    for disk, path in zip(disks, disk_paths, strict=True):
        source = disk.find("source")
        if source is None:
            source = ET.SubElement(disk, "source")
        source.attrib.clear()
        source.set("file", path)
    return ET.tostring(root, encoding="unicode")
