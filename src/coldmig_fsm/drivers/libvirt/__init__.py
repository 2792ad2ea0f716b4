"""The libvirt/QEMU hypervisor driver (needs ``coldmig_fsm[libvirt]``).

The modules, from the host outwards:

- :mod:`.driver`: :class:`LibvirtDriver`, the driver of one host, and its records;
- :mod:`.fabric`: :class:`LibvirtFabric`, the hosts a cloud moves guests between;
- :mod:`.domain`: the guests' and disks' names, their XML built and rewritten;
- :mod:`.transport`: how a disk's bytes travel from the source to the destination;
- :mod:`.hosts`: the hosts file ``scripts/libvirt-hosts.sh`` writes.
"""

from coldmig_fsm.drivers.libvirt.domain import disk_name, guest_name
from coldmig_fsm.drivers.libvirt.driver import GuestDescription, LibvirtDriver, MigrationProgress
from coldmig_fsm.drivers.libvirt.fabric import LibvirtFabric
from coldmig_fsm.drivers.libvirt.hosts import read_hosts_env
from coldmig_fsm.drivers.libvirt.transport import (
    DiskCopy,
    DiskTransport,
    LocalCopyTransport,
    VolumeStreamTransport,
)

__all__ = [
    "DiskCopy",
    "DiskTransport",
    "GuestDescription",
    "LibvirtDriver",
    "LibvirtFabric",
    "LocalCopyTransport",
    "MigrationProgress",
    "VolumeStreamTransport",
    "disk_name",
    "guest_name",
    "read_hosts_env",
]
