"""Every public error of coldmig_fsm.

The class names are Nova's, so that a caller who knows Nova knows what each means. Each
class also inherits the standard-library type that fits it, so ``except LookupError``
works as a Python programmer expects, and carries its HTTP status in ``code``, as Nova's
exceptions do.

Exception tree, with each class's ``code``::

    ColdmigError                              500
    ├── RequestRefused                        400  the API refused; nothing changed
    │   ├── PolicyNotAuthorized               403  (PermissionError) caller may not do this
    │   ├── QuotaError                        403  (PermissionError) a resize over quota
    │   ├── NotFound                          404  (LookupError)
    │   │   ├── InstanceNotFound              404
    │   │   ├── FlavorNotFound                400  named in the request body
    │   │   ├── ComputeHostNotFound           400  named in the request body
    │   │   ├── MigrationNotFound             404
    │   │   └── MigrationNotFoundByStatus     400  confirm or revert: no such migration
    │   ├── Invalid                           400  (ValueError)
    │   │   ├── CannotResizeToSameFlavor      400
    │   │   ├── CannotResizeDisk              400  a root_gb 0 flavor for a non-zero disk
    │   │   ├── FlavorDiskSmallerThanMinDisk  400  below the image's minimum disk
    │   │   └── CannotMigrateToSameHost       400
    │   └── Conflict                          409  (RuntimeError)
    │       ├── InstanceIsLocked              409
    │       ├── InstanceInvalidState          409
    │       ├── InstanceExists                409  boot: the name or uuid is taken
    │       ├── UnexpectedTaskStateError      409  a compare-and-swap lost a race
    │       └── UnexpectedMigrationStatusError    409
    ├── NoValidHost                           500  the scheduler found no host
    │   └── MaxRetriesExceeded                500  every alternate host failed
    ├── ComputeResourcesUnavailable           400  the dest's claim failed (reschedule)
    ├── MoveInterrupted                       500  a crash or a lost message stopped the
    │   │                                          move; recovery rolled it back or put
    │   │                                          it in error
    │   └── MigrationCancelled                500  abort_migration cancelled the move
    ├── OperationPending                      500  the request cannot progress until a
    │                                              compute service restarts or the cloud
    │                                              is reconciled
    ├── HypervisorError                       500  (OSError) a driver call failed
    │   ├── InstanceFaultRollback             500  the guest is intact; roll the move back
    │   ├── DriverTimeout                     500  the call did not return in time
    │   └── UnableToMigrateToSelf             400  the driver cannot move a guest to its
    │                                              own host
    ├── ScenarioError                         400  (ValueError) invalid scenario file
    └── MachineDefinitionError                500  (TypeError) invalid transition table

``RequestRefused`` errors are raised synchronously by the API before anything changes.
``NoValidHost`` and ``HypervisorError`` happen after the request was accepted; they are
the *outcome* of an operation (see :class:`coldmig_fsm.Operation`).

HTTP status codes
-----------------
A fault record (:class:`coldmig_fsm.Fault`) stores the ``code`` of the error it records,
and 500 for an error that is not this library's, as Nova's fault records do. For a
``RequestRefused`` error, ``code`` is the status Nova 34's API answers to the request that
raises it; Nova's API handlers translate some of its classes, so this is not always the
``code`` attribute of Nova's class of the same name. ``tests/test_public_api.py`` checks
each against the statuses recorded from Nova in ``conformance/probe-results``. For the
other errors, ``code`` is that of Nova's class, which is what Nova's fault records carry
(``NoValidHost`` and ``MaxRetriesExceeded``: 500). Where the two differ, or where Nova has
no such class::

    RequestRefused                  400   no class; a refused request is a client error
    QuotaError                      403   no class (OverQuota is 413); the API answers 403
    FlavorNotFound                  400   class 404; resize and create answer 400
    ComputeHostNotFound             400   class 404; migrate and create answer 400
    MigrationNotFoundByStatus       400   class 404; confirm and revert answer 400
    CannotResizeToSameFlavor        400   class 500; resize answers 400
    CannotResizeDisk                400   class 500; resize answers 400
    FlavorDiskSmallerThanMinDisk    400   class 500; resize answers 400
    CannotMigrateToSameHost         400   class 500; migrate answers 400
    Conflict                        409   no class
    InstanceIsLocked                409   class 400; the API answers 409
    InstanceInvalidState            409   class 400; the API answers 409
    InstanceExists                  409   class 500; create answers 409
    UnexpectedTaskStateError        409   class 500; 409 where the API catches it (shelve),
                                          500 elsewhere: a lost race is a conflict here
    UnexpectedMigrationStatusError  409   no class
    MoveInterrupted                 500   no class (Nova's default code)
    MigrationCancelled              500   no class (Nova's default code)
    OperationPending                500   no class (Nova's default code)
    HypervisorError                 500   no class; a driver's error is recorded as 500
    DriverTimeout                   500   no class (Nova's default code)
    ScenarioError                   400   no class; an invalid file is a client error
    MachineDefinitionError          500   no class; a programming error
"""

from __future__ import annotations

from typing import ClassVar

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
    "InstanceExists",
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
    """Base class of every error this library raises on purpose.

    ``code`` is the error's HTTP status (see the module docstring for each class's).
    """

    code: ClassVar[int] = 500

    @property
    def message(self) -> str:
        return str(self)


class RequestRefused(ColdmigError):
    """The API refused the request; no state was changed."""

    code = 400


class PolicyNotAuthorized(RequestRefused, PermissionError):
    """The caller's role does not allow the action (``migrate`` is admin-only)."""

    code = 403


class QuotaError(RequestRefused, PermissionError):
    """A resize to a bigger flavor would exceed the project's quota."""

    code = 403


class NotFound(RequestRefused, LookupError):
    """Something the request names does not exist."""

    code = 404


class InstanceNotFound(NotFound):
    code = 404


class FlavorNotFound(NotFound):
    """The flavor named by a resize or a boot does not exist (or is disabled).

    400, not 404: the flavor is named in the request's body, not its URL, and Nova's API
    answers 400 for it.
    """

    code = 400


class ComputeHostNotFound(NotFound):
    """The host named by a migrate or a boot does not exist (400, as Nova's API answers)."""

    code = 400


class MigrationNotFound(NotFound):
    code = 404


class MigrationNotFoundByStatus(NotFound):
    """Confirm or revert found no migration of the instance in the needed status.

    400: Nova's API answers "Instance has not been resized." with 400.
    """

    code = 400


class Invalid(RequestRefused, ValueError):
    """The request is well-formed but asks for something that makes no sense."""

    code = 400


class CannotResizeToSameFlavor(Invalid):
    code = 400


class CannotResizeDisk(Invalid):
    """A resize to a flavor with ``root_gb`` 0 for an instance whose root disk is not 0."""

    code = 400


class FlavorDiskSmallerThanMinDisk(Invalid):
    """The new flavor's ``root_gb`` is below the instance's image minimum disk.

    The minimum is what Nova records at boot: the larger of the image's ``min_disk`` and
    the boot flavor's ``root_gb``.
    """

    code = 400


class CannotMigrateToSameHost(Invalid):
    code = 400


class Conflict(RequestRefused, RuntimeError):
    """The instance's current state does not allow the request."""

    code = 409


class InstanceIsLocked(Conflict):
    code = 409


class InstanceInvalidState(Conflict):
    code = 409


class InstanceExists(Conflict):
    """``Cloud.boot`` was given a name or a uuid that an instance already has.

    Nova's name for a duplicate instance (raised when server names must be unique); its
    API answers 409.
    """

    code = 409


class UnexpectedTaskStateError(Conflict):
    """A save expected another task_state: a concurrent request changed it first."""

    code = 409


class UnexpectedMigrationStatusError(Conflict):
    """A migration save expected another status: a concurrent request changed it first."""

    code = 409


class NoValidHost(ColdmigError):
    """The scheduler found no host able to take the instance."""

    code = 500


class MaxRetriesExceeded(NoValidHost):
    """Every host the scheduler offered (up to ``max_attempts``) failed."""

    code = 500


class ComputeResourcesUnavailable(ColdmigError):
    """The destination host no longer has room for the claim; the move is rescheduled.

    400, as Nova's class (a ``ServiceUnavailable``, which is an ``Invalid``).
    """

    code = 400


class MoveInterrupted(ColdmigError):
    """A compute service crashed, or a message was lost, in the middle of the move.

    The restart (or the reconciliation of the cloud) put the instance in a safe state:
    rolled back where the guest was known to be intact, ``error`` otherwise.
    """

    code = 500


class MigrationCancelled(MoveInterrupted):
    """``abort_migration`` cancelled the move; the guest is back on the source."""

    code = 500


class OperationPending(ColdmigError):
    """The request cannot progress now: its next step waits for a compute service that
    is down, or its message was lost. ``restart_compute`` or ``reconcile`` settles it."""

    code = 500


class HypervisorError(ColdmigError, OSError):
    """A hypervisor driver call failed."""

    code = 500


class InstanceFaultRollback(HypervisorError):
    """The driver failed but left the guest intact, so the move can be rolled back.

    ``inner`` is the error the operation reports.
    """

    code = 500

    def __init__(self, inner: BaseException) -> None:
        super().__init__(str(inner))
        self.inner = inner


class DriverTimeout(HypervisorError):
    """A driver call did not return within its timeout (the guest's state is unknown)."""

    code = 500


class UnableToMigrateToSelf(HypervisorError):
    """The driver cannot move a guest to its own host; the move is rescheduled.

    400, as Nova's class (an ``Invalid``).
    """

    code = 400


class ScenarioError(ColdmigError, ValueError):
    """A scenario file is invalid. The message names the file, the key and the line."""

    code = 400


class MachineDefinitionError(ColdmigError, TypeError):
    """A transition table is inconsistent; raised when the machine is built."""

    code = 500
