"""The libvirt/QEMU hypervisor driver (needs ``coldmig_fsm[libvirt]``)."""

from coldmig_fsm.drivers.libvirt.driver import (
    DiskCopy,
    DiskTransport,
    GuestDescription,
    LibvirtDriver,
    LibvirtFabric,
    LocalCopyTransport,
    MigrationProgress,
    VolumeStreamTransport,
    disk_name,
    guest_name,
    read_hosts_env,
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
