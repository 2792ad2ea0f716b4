"""coldmig_fsm: OpenStack Nova's cold migration and resize as an explicit state machine.

The public face. Build a cloud with :class:`Cloud` (fake hosts by default), run
operations that return :class:`Operation` handles, and read the records back; or use the
roles (:class:`ComputeAPI`, :class:`Conductor`, :class:`ComputeService`) directly and move
the :mod:`~coldmig_fsm.messages` between them yourself. Every error class is exported
here too, the bases that callers catch included (``ColdmigError``, ``RequestRefused``,
``NotFound``, ``Invalid``, ``Conflict``, ``HypervisorError``, ``MoveInterrupted``...); the
tree and each class's HTTP ``code`` are in :mod:`coldmig_fsm.exceptions`. The state
machine is in :mod:`coldmig_fsm.machine`.
"""

from coldmig_fsm import messages
from coldmig_fsm.clock import Clock, ManualClock, SystemClock
from coldmig_fsm.drivers import (
    DiskInfo,
    DriverCapabilities,
    FakeFault,
    FakeHypervisor,
    FaultMode,
    GuestInfo,
    HypervisorDriver,
)
from coldmig_fsm.exceptions import (
    CannotMigrateToSameHost,
    CannotResizeDisk,
    CannotResizeToSameFlavor,
    ColdmigError,
    ComputeHostNotFound,
    ComputeResourcesUnavailable,
    Conflict,
    DriverTimeout,
    FlavorDiskSmallerThanMinDisk,
    FlavorNotFound,
    HypervisorError,
    InstanceExists,
    InstanceFaultRollback,
    InstanceInvalidState,
    InstanceIsLocked,
    InstanceNotFound,
    Invalid,
    MachineDefinitionError,
    MaxRetriesExceeded,
    MigrationCancelled,
    MigrationNotFound,
    MigrationNotFoundByStatus,
    MoveInterrupted,
    NotFound,
    NoValidHost,
    OperationPending,
    PolicyNotAuthorized,
    QuotaError,
    RequestRefused,
    ScenarioError,
    UnableToMigrateToSelf,
    UnexpectedMigrationStatusError,
    UnexpectedTaskStateError,
)
from coldmig_fsm.harness.scenario import load_scenario, run_scenario
from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.operations import OPERATIONS, Op, OperationSpec
from coldmig_fsm.records import (
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
from coldmig_fsm.roles.api import ComputeAPI, PreparedRequest
from coldmig_fsm.roles.compute import ComputeService
from coldmig_fsm.roles.conductor import Conductor
from coldmig_fsm.roles.runtime import Runtime
from coldmig_fsm.runners.cloud import Cloud, LostMessage, Operation, OperationResult, Preflight
from coldmig_fsm.states import (
    MachineState,
    MigrationStatus,
    MigrationType,
    PowerState,
    TaskState,
    VmState,
)
from coldmig_fsm.stores.memory import MemoryStore, Store
from coldmig_fsm.stores.sqlite import SqliteStore
from coldmig_fsm.verification import invariants

__version__ = "0.1.0"

__all__ = [
    "MACHINE",
    "OPERATIONS",
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
    "ComputeResourcesUnavailable",
    "ComputeService",
    "Conductor",
    "Conflict",
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
    "InstanceExists",
    "InstanceFaultRollback",
    "InstanceInvalidState",
    "InstanceIsLocked",
    "InstanceNotFound",
    "Invalid",
    "LostMessage",
    "Machine",
    "MachineDefinitionError",
    "MachineState",
    "ManualClock",
    "MaxRetriesExceeded",
    "MemoryStore",
    "Migration",
    "MigrationCancelled",
    "MigrationNotFound",
    "MigrationNotFoundByStatus",
    "MigrationStatus",
    "MigrationType",
    "MoveInterrupted",
    "NoValidHost",
    "NotFound",
    "Notification",
    "Op",
    "Operation",
    "OperationPending",
    "OperationResult",
    "OperationSpec",
    "Outcome",
    "PolicyNotAuthorized",
    "PowerState",
    "Preflight",
    "PreparedRequest",
    "Project",
    "QuotaError",
    "RequestRefused",
    "Resources",
    "Runtime",
    "ScenarioError",
    "SqliteStore",
    "Store",
    "SystemClock",
    "TaskState",
    "UnableToMigrateToSelf",
    "UnexpectedMigrationStatusError",
    "UnexpectedTaskStateError",
    "VmState",
    "invariants",
    "load_scenario",
    "messages",
    "run_scenario",
]
