"""Every public error of coldmig_fsm.

The class names are Nova's, so that a caller who knows Nova knows what each means. Each
class also inherits the standard-library type that fits it, so ``except LookupError``
works as a Python programmer expects.

Exception tree::

    ColdmigError
    ├── RequestRefused                    the API refused; nothing changed
    │   ├── PolicyNotAuthorized           (PermissionError)  caller may not do this
    │   ├── QuotaError                    (PermissionError)  a resize up exceeds quota
    │   ├── NotFound                      (LookupError)
    │   │   ├── InstanceNotFound
    │   │   ├── FlavorNotFound
    │   │   ├── ComputeHostNotFound
    │   │   ├── MigrationNotFound
    │   │   └── MigrationNotFoundByStatus
    │   ├── Invalid                       (ValueError)
    │   │   ├── CannotResizeToSameFlavor
    │   │   ├── CannotResizeDisk          a root_gb 0 flavor for a non-zero disk
    │   │   ├── FlavorDiskSmallerThanMinDisk  below the image's minimum disk
    │   │   └── CannotMigrateToSameHost
    │   └── Conflict                      (RuntimeError)
    │       ├── InstanceIsLocked
    │       ├── InstanceInvalidState
    │       ├── UnexpectedTaskStateError  a compare-and-swap lost a race
    │       └── UnexpectedMigrationStatusError
    ├── NoValidHost                       the scheduler found no host
    │   └── MaxRetriesExceeded            every alternate host failed
    ├── ComputeResourcesUnavailable       the destination's claim failed (reschedule)
    ├── MoveInterrupted                   a crash or a lost message stopped the move;
    │   │                                 recovery rolled it back or put it in error
    │   └── MigrationCancelled            abort_migration cancelled the move
    ├── OperationPending                  the request cannot progress until a compute
    │                                     service restarts or the cloud is reconciled
    ├── HypervisorError                   (OSError)  a driver call failed
    │   ├── InstanceFaultRollback         the guest is intact; roll the move back
    │   ├── DriverTimeout                 the call did not return in time
    │   └── UnableToMigrateToSelf         the driver cannot move a guest to its own host
    ├── ScenarioError                     (ValueError)  invalid scenario file
    └── MachineDefinitionError            (TypeError)  invalid transition table

``RequestRefused`` errors are raised synchronously by the API before anything changes.
``NoValidHost`` and ``HypervisorError`` happen after the request was accepted; they are
the *outcome* of an operation (see :class:`coldmig_fsm.Operation`).
"""

from __future__ import annotations

__all__ = [
    "CannotMigrateToSameHost",
    "CannotResizeDisk",
    "CannotResizeToSameFlavor",
    "ColdmigError",
    "ComputeHostNotFound",
    "ComputeResourcesUnavailable",
    "Conflict",
    "DriverTimeout",
    "FlavorDiskSmallerThanMinDisk",
    "FlavorNotFound",
    "HypervisorError",
    "InstanceFaultRollback",
    "InstanceInvalidState",
    "InstanceIsLocked",
    "InstanceNotFound",
    "Invalid",
    "MachineDefinitionError",
    "MaxRetriesExceeded",
    "MigrationCancelled",
    "MigrationNotFound",
    "MigrationNotFoundByStatus",
    "MoveInterrupted",
    "NoValidHost",
    "NotFound",
    "OperationPending",
    "PolicyNotAuthorized",
    "QuotaError",
    "RequestRefused",
    "ScenarioError",
    "UnableToMigrateToSelf",
    "UnexpectedMigrationStatusError",
    "UnexpectedTaskStateError",
]


class ColdmigError(Exception):
    """Base class of every error this library raises on purpose."""

    @property
    def message(self) -> str:
        return str(self)


class RequestRefused(ColdmigError):
    """The API refused the request; no state was changed."""


class PolicyNotAuthorized(RequestRefused, PermissionError):
    """The caller's role does not allow the action (``migrate`` is admin-only)."""


class QuotaError(RequestRefused, PermissionError):
    """A resize to a bigger flavor would exceed the project's quota."""


class NotFound(RequestRefused, LookupError):
    """Something the request names does not exist."""


class InstanceNotFound(NotFound):
    pass


class FlavorNotFound(NotFound):
    pass


class ComputeHostNotFound(NotFound):
    pass


class MigrationNotFound(NotFound):
    pass


class MigrationNotFoundByStatus(NotFound):
    """Confirm or revert found no migration of the instance in the needed status."""


class Invalid(RequestRefused, ValueError):
    """The request is well-formed but asks for something that makes no sense."""


class CannotResizeToSameFlavor(Invalid):
    pass


class CannotResizeDisk(Invalid):
    """A resize to a flavor with ``root_gb`` 0 for an instance whose root disk is not 0."""


class FlavorDiskSmallerThanMinDisk(Invalid):
    """The new flavor's ``root_gb`` is below the instance's image minimum disk.

    The minimum is what Nova records at boot: the larger of the image's ``min_disk`` and
    the boot flavor's ``root_gb``.
    """


class CannotMigrateToSameHost(Invalid):
    pass


class Conflict(RequestRefused, RuntimeError):
    """The instance's current state does not allow the request."""


class InstanceIsLocked(Conflict):
    pass


class InstanceInvalidState(Conflict):
    pass


class UnexpectedTaskStateError(Conflict):
    """A save expected another task_state: a concurrent request changed it first."""


class UnexpectedMigrationStatusError(Conflict):
    """A migration save expected another status: a concurrent request changed it first."""


class NoValidHost(ColdmigError):
    """The scheduler found no host able to take the instance."""


class MaxRetriesExceeded(NoValidHost):
    """Every host the scheduler offered (up to ``max_attempts``) failed."""


class ComputeResourcesUnavailable(ColdmigError):
    """The destination host no longer has room for the claim; the move is rescheduled."""


class MoveInterrupted(ColdmigError):
    """A compute service crashed, or a message was lost, in the middle of the move.

    The restart (or the reconciliation of the cloud) put the instance in a safe state:
    rolled back where the guest was known to be intact, ``error`` otherwise.
    """


class MigrationCancelled(MoveInterrupted):
    """``abort_migration`` cancelled the move; the guest is back on the source."""


class OperationPending(ColdmigError):
    """The request cannot progress now: its next step waits for a compute service that
    is down, or its message was lost. ``restart_compute`` or ``reconcile`` settles it."""


class HypervisorError(ColdmigError, OSError):
    """A hypervisor driver call failed."""


class InstanceFaultRollback(HypervisorError):
    """The driver failed but left the guest intact, so the move can be rolled back.

    ``inner`` is the error the operation reports.
    """

    def __init__(self, inner: BaseException) -> None:
        super().__init__(str(inner))
        self.inner = inner


class DriverTimeout(HypervisorError):
    """A driver call did not return within its timeout (the guest's state is unknown)."""


class UnableToMigrateToSelf(HypervisorError):
    pass


class ScenarioError(ColdmigError, ValueError):
    """A scenario file is invalid. The message names the file, the key and the line."""


class MachineDefinitionError(ColdmigError, TypeError):
    """A transition table is inconsistent; raised when the machine is built."""
