"""Hypervisor drivers: the contract and the implementations shipped with the library."""

from coldmig_fsm.drivers.base import DiskInfo, DriverCapabilities, GuestInfo, HypervisorDriver
from coldmig_fsm.drivers.fake import (
    DriverCall,
    FakeDriver,
    FakeFault,
    FakeGuest,
    FakeHypervisor,
    FaultMode,
)

__all__ = [
    "DiskInfo",
    "DriverCall",
    "DriverCapabilities",
    "FakeDriver",
    "FakeFault",
    "FakeGuest",
    "FakeHypervisor",
    "FaultMode",
    "GuestInfo",
    "HypervisorDriver",
]
