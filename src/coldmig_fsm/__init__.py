"""coldmig_fsm: OpenStack Nova's cold migration and resize as an explicit state machine.

The public face. Build a cloud with :class:`Cloud` (fake hosts by default), run
operations that return :class:`Operation` handles, and read the records back; or use the
roles (:class:`ComputeAPI`, :class:`Conductor`, :class:`ComputeService`) directly and move
the :mod:`~coldmig_fsm.messages` between them yourself. Errors are in
:mod:`coldmig_fsm.exceptions`; the state machine in :mod:`coldmig_fsm.machine`.
"""

from . import invariants, messages
from .api import ComputeAPI, PreparedRequest
from .clock import Clock, ManualClock, SystemClock
from .cloud import Cloud, LostMessage, Operation, OperationResult, Preflight
from .compute import ComputeService
from .conductor import Conductor
from .drivers import (
    DiskInfo,
    DriverCapabilities,
    FakeFault,
    FakeHypervisor,
    FaultMode,
    GuestInfo,
    HypervisorDriver,
)
from .exceptions import (
    CannotMigrateToSameHost,
    CannotResizeDisk,
    CannotResizeToSameFlavor,
    ColdmigError,
    ComputeHostNotFound,
    DriverTimeout,
    FlavorDiskSmallerThanMinDisk,
    FlavorNotFound,
    HypervisorError,
    InstanceFaultRollback,
    InstanceInvalidState,
    InstanceIsLocked,
    InstanceNotFound,
    MaxRetriesExceeded,
    MigrationCancelled,
    MigrationNotFoundByStatus,
    MoveInterrupted,
    NoValidHost,
    OperationPending,
    PolicyNotAuthorized,
    QuotaError,
    ScenarioError,
    UnexpectedTaskStateError,
)
from .machine import MACHINE, Machine
from .records import (
    ActionEvent,
    Allocation,
    Caller,
    CloudConfig,
    Fault,
    Flavor,
    Host,
    Instance,
    InstanceAction,
    Migration,
    Notification,
    Outcome,
    Project,
    Resources,
)
from .runtime import Runtime
from .scenario import load_scenario, run_scenario
from .sqlite_store import SqliteStore
from .states import MachineState, MigrationStatus, MigrationType, PowerState, TaskState, VmState
from .store import MemoryStore, Store

__version__ = "0.1.0"

__all__ = [
    "MACHINE",
    "ActionEvent",
    "Allocation",
    "Caller",
    "CannotMigrateToSameHost",
    "CannotResizeDisk",
    "CannotResizeToSameFlavor",
    "Clock",
    "Cloud",
    "CloudConfig",
    "ColdmigError",
    "ComputeAPI",
    "ComputeHostNotFound",
    "ComputeService",
    "Conductor",
    "DiskInfo",
    "DriverCapabilities",
    "DriverTimeout",
    "FakeFault",
    "FakeHypervisor",
    "Fault",
    "FaultMode",
    "Flavor",
    "FlavorDiskSmallerThanMinDisk",
    "FlavorNotFound",
    "GuestInfo",
    "Host",
    "HypervisorDriver",
    "HypervisorError",
    "Instance",
    "InstanceAction",
    "InstanceFaultRollback",
    "InstanceInvalidState",
    "InstanceIsLocked",
    "InstanceNotFound",
    "LostMessage",
    "Machine",
    "MachineState",
    "ManualClock",
    "MaxRetriesExceeded",
    "MemoryStore",
    "Migration",
    "MigrationCancelled",
    "MigrationNotFoundByStatus",
    "MigrationStatus",
    "MigrationType",
    "MoveInterrupted",
    "NoValidHost",
    "Notification",
    "Operation",
    "OperationPending",
    "OperationResult",
    "Outcome",
    "PolicyNotAuthorized",
    "PowerState",
    "Preflight",
    "PreparedRequest",
    "Project",
    "QuotaError",
    "Resources",
    "Runtime",
    "ScenarioError",
    "SqliteStore",
    "Store",
    "SystemClock",
    "TaskState",
    "UnexpectedTaskStateError",
    "VmState",
    "invariants",
    "load_scenario",
    "messages",
    "run_scenario",
]
