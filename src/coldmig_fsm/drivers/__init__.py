"""Hypervisor drivers: the contract and the implementations shipped with the library."""

from .base import DiskInfo, DriverCapabilities, GuestInfo, HypervisorDriver
from .fake import DriverCall, FakeDriver, FakeFault, FakeGuest, FakeHypervisor, FaultMode

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
