"""The records the roles read and write, as frozen ``attrs`` classes.

Records never change in place: a role computes a new record with :func:`replace` (or
:func:`attrs.evolve`) and saves it through the store (see :mod:`coldmig_fsm.stores.memory`).
Validators reject impossible values when a record is built, so a record that exists is well-formed.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from coldmig_fsm.states import (
    MachineState,
    MigrationStatus,
    MigrationType,
    PowerState,
    TaskState,
    VmState,
)

__all__ = [
    "IMAGE_MIN_DISK",
    "ActionEvent",
    "Allocation",
    "Caller",
    "CloudConfig",
    "EventResult",
    "Fault",
    "Flavor",
    "Host",
    "Instance",
    "InstanceAction",
    "Migration",
    "Notification",
    "Outcome",
    "Project",
    "RequestRecord",
    "Resources",
    "replace",
]

_non_negative = attrs.validators.ge(0)

_R = TypeVar("_R")


@attrs.frozen
class _Shape:
    """How to copy one record class: a generated function that copies every field
    through the slots' own descriptors, and each ``__init__`` field's setter."""

    copy: Callable[[Any], Any]
    fields: Mapping[str, tuple[attrs.Attribute[Any], Callable[[Any, Any], None]]]
    post_init: bool


_SHAPES: dict[type, _Shape | None] = {}


def _shape(cls: type) -> _Shape | None:
    """The class's shape; ``None`` for a class without slots (copied by evolve)."""
    if "__slots__" not in cls.__dict__:
        _SHAPES[cls] = None
        return None
    fields = attrs.fields(cls)
    setters = {f.name: getattr(cls, f.name).__set__ for f in fields}
    # One line per field, no loop: ``set_<i>(copy, record.<name>)``. The names are the
    # class's own attribute names (identifiers), so the text is safe to compile.
    lines = [f"    set_{i}(copy, record.{f.name})" for i, f in enumerate(fields)]
    source = "\n".join(["def copy(record):", "    copy = new(cls)", *lines, "    return copy"])
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    scope.update({f"set_{i}": setters[f.name] for i, f in enumerate(fields)})
    exec(compile(source, f"<copy of {cls.__qualname__}>", "exec"), scope)
    shape = _Shape(
        scope["copy"],
        {f.alias: (f, setters[f.name]) for f in fields if f.init},
        hasattr(cls, "__attrs_post_init__"),
    )
    _SHAPES[cls] = shape
    return shape


if TYPE_CHECKING:
    # For the type checker ``replace`` *is* ``attrs.evolve``: the attrs plugin then checks
    # every changed field's name and type at each call, as it does for evolve.
    from attrs import evolve as replace
else:

    def replace(record: _R, **changes: Any) -> _R:
        """``record`` with ``changes``: what :func:`attrs.evolve` returns, about twice as
        fast.

        The copy takes every field of ``record`` as it is (it was converted and validated
        when ``record`` was made) and runs the converter and validator of each *changed*
        field only, then ``__attrs_post_init__`` when the class has one. The roles make
        about thirty copies per migrate+confirm cycle; this is the copy they use.

        Raises:
            TypeError: a name in ``changes`` is not an ``__init__`` field of the class.
            ValueError, TypeError: a changed value fails its field's validator.
        """
        cls = type(record)
        shape = _SHAPES[cls] if cls in _SHAPES else _shape(cls)
        if shape is None:
            return attrs.evolve(record, **changes)
        copy = shape.copy(record)
        if not changes:
            return copy
        fields = shape.fields
        checks = []
        for name, given in changes.items():
            found = fields.get(name)
            if found is None:
                raise TypeError(f"{cls.__name__} has no field {name!r} to replace")
            field, set_field = found
            value = given if field.converter is None else field.converter(given)
            set_field(copy, value)
            if field.validator is not None:
                checks.append((field, value))
        for field, value in checks:
            field.validator(copy, field, value)
        if shape.post_init:
            copy.__attrs_post_init__()
        return copy


IMAGE_MIN_DISK: Final = "image_min_disk"
"""System-metadata key of the image's minimum disk in GB, as Nova records it at boot."""
_name = attrs.validators.and_(attrs.validators.instance_of(str), attrs.validators.min_len(1))


@attrs.frozen
class Resources:
    """An amount of the three resources a flavor asks for and a host offers."""

    vcpus: int = attrs.field(default=0, validator=_non_negative)
    ram_mb: int = attrs.field(default=0, validator=_non_negative)
    disk_gb: int = attrs.field(default=0, validator=_non_negative)

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus + other.vcpus, self.ram_mb + other.ram_mb, self.disk_gb + other.disk_gb
        )

    def fits_within(self, capacity: Resources) -> bool:
        """True when every resource of ``self`` is at most the one of ``capacity``."""
        return (
            self.vcpus <= capacity.vcpus
            and self.ram_mb <= capacity.ram_mb
            and self.disk_gb <= capacity.disk_gb
        )

    def as_dict(self) -> dict[str, int]:
        return {"vcpus": self.vcpus, "ram_mb": self.ram_mb, "disk_gb": self.disk_gb}


@attrs.frozen
class Flavor:
    """A named size of instance. A ``disabled`` flavor cannot be resized to."""

    id: str = attrs.field(validator=_name)
    vcpus: int = attrs.field(validator=attrs.validators.ge(1))
    ram_mb: int = attrs.field(validator=attrs.validators.ge(1))
    root_gb: int = attrs.field(validator=_non_negative)
    disabled: bool = False

    @property
    def resources(self) -> Resources:
        return Resources(self.vcpus, self.ram_mb, self.root_gb)


@attrs.frozen
class Host:
    """A compute host's inventory and what its compute service reports about itself.

    The scheduler only picks a host whose service is up (see below) and ``enabled`` and
    whose free resources (inventory minus every claim on it) fit the requested flavor.
    ``disk_available_least_gb`` is what the hypervisor reports as really free on disk
    (Nova's ``disk_available_least``; ``None`` when it reports nothing): the disk weigher
    uses the smaller of it and what the claims leave. Nova's fake driver reports 0, and so
    does a scenario host unless it says otherwise.

    The service's own facts, written by :mod:`coldmig_fsm.roles.services` (Nova keeps
    them in the ``services`` and ``compute_nodes`` tables), so that the conductor and the
    scheduler read the store and never a driver object:

    Attributes:
        up: false once the service is known to be stopped (a crash the runner saw, or an
            operator's mark: Nova's ``forced_down``); only a restart sets it again, never
            a heartbeat.
        heartbeat_at: the service's last heartbeat (Nova's ``last_seen_up``); ``None``
            when it never reported one, which counts as up (see
            :func:`coldmig_fsm.roles.services.is_up`).
        supports_migrate_to_same_host: the driver's capability of that name, as the
            service registered it when it started (``False`` until then).
    """

    name: str = attrs.field(validator=_name)
    vcpus: int = attrs.field(validator=_non_negative)
    ram_mb: int = attrs.field(validator=_non_negative)
    disk_gb: int = attrs.field(validator=_non_negative)
    up: bool = True
    enabled: bool = True
    disk_available_least_gb: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_non_negative)
    )
    heartbeat_at: dt.datetime | None = None
    supports_migrate_to_same_host: bool = False

    @property
    def capacity(self) -> Resources:
        return Resources(self.vcpus, self.ram_mb, self.disk_gb)


@attrs.frozen
class Project:
    """A project's quota limits; ``None`` means unlimited."""

    id: str = attrs.field(validator=_name)
    cores: int | None = None
    ram_mb: int | None = None


@attrs.frozen
class Caller:
    """Who makes a request: an admin, or a member of ``project_id`` (the owner)."""

    project_id: str | None = None
    is_admin: bool = False
    user_id: str = "user"

    @classmethod
    def admin(cls) -> Caller:
        return cls(project_id=None, is_admin=True, user_id="admin")

    @classmethod
    def owner(cls, project_id: str) -> Caller:
        return cls(project_id=project_id, is_admin=False, user_id=f"{project_id}-user")

    @property
    def role(self) -> str:
        return "admin" if self.is_admin else "owner"


@attrs.frozen
class CloudConfig:
    """The options of Nova that this workflow reads.

    Attributes:
        allow_resize_to_same_host: when false the scheduler ignores the source host.
        resize_confirm_window: seconds after which a ``finished`` migration is confirmed
            automatically; 0 disables auto-confirm.
        max_attempts: hosts tried per move, the first choice included.
        shutdown_timeout: seconds of clean shutdown before a hard power-off.
        shutdown_retry_interval: seconds between clean-shutdown requests.
        service_down_time: seconds after a compute service's last heartbeat at which it
            counts as down (Nova's ``service_down_time``, default 60).
        report_interval: seconds between a running compute service's heartbeats (Nova's
            ``report_interval``, default 10); less than ``service_down_time``, or a
            running service would look down between two heartbeats.
    """

    allow_resize_to_same_host: bool = False
    resize_confirm_window: int = attrs.field(default=0, validator=_non_negative)
    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    shutdown_timeout: int = attrs.field(default=60, validator=_non_negative)
    shutdown_retry_interval: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    service_down_time: int = attrs.field(default=60, validator=attrs.validators.ge(1))
    report_interval: int = attrs.field(default=10, validator=attrs.validators.ge(1))

    @report_interval.validator
    def _check_report_interval(self, _: attrs.Attribute[int], value: int) -> None:
        if value >= self.service_down_time:
            raise ValueError(
                f"report_interval ({value} s) must be less than service_down_time "
                f"({self.service_down_time} s): a running service would look down between "
                f"two heartbeats; lower report_interval or raise service_down_time"
            )


def _frozen_mapping(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@attrs.frozen(hash=False)
class Instance:
    """A server. ``(vm_state, task_state)`` is its machine state.

    Invariants:
        ``old_flavor``/``new_flavor`` are set by ``prep_resize`` and stay after a failed
        move (as in Nova); ``migration_id`` (Nova's migration context) is set only while
        a move holds claims on a second host.
    """

    uuid: str = attrs.field(validator=_name)
    name: str = attrs.field(validator=_name)
    project_id: str = attrs.field(validator=_name)
    host: str = attrs.field(validator=_name)
    flavor: str = attrs.field(validator=_name)
    vm_state: VmState = VmState.ACTIVE
    task_state: TaskState | None = None
    power_state: PowerState = PowerState.NOSTATE
    old_flavor: str | None = None
    new_flavor: str | None = None
    locked: bool = False
    locked_by: str | None = None
    progress: int = 0
    system_metadata: dict[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    migration_id: int | None = None
    node: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.node is None:
            object.__setattr__(self, "node", self.host)

    @property
    def state(self) -> MachineState:
        return MachineState(self.vm_state, self.task_state)

    @property
    def old_vm_state(self) -> VmState | None:
        """The vm_state stashed by ``prep_resize`` for the way back."""
        value = self.system_metadata.get("old_vm_state")
        return VmState(value) if value is not None else None

    @property
    def image_min_disk_gb(self) -> int:
        """The smallest root disk a resize may ask for (recorded at boot; 0 if not)."""
        return int(self.system_metadata.get(IMAGE_MIN_DISK, "0"))

    def describe(self) -> str:
        return f"{self.name} ({self.uuid})"


@attrs.frozen
class Migration:
    """One move of one instance. ``id`` counts from 1 in creation order."""

    id: int
    uuid: str
    instance_uuid: str
    migration_type: MigrationType
    status: MigrationStatus
    source_compute: str
    old_flavor: str
    new_flavor: str
    dest_compute: str | None = None
    request_id: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def source_node(self) -> str:
        return self.source_compute

    @property
    def dest_node(self) -> str | None:
        return self.dest_compute


@attrs.frozen
class Allocation:
    """Resources claimed on one host by one consumer (an instance or a migration).

    Invariant: a consumer holds at most one allocation per host.
    """

    consumer: str
    host: str
    resources: Resources


class EventResult(enum.StrEnum):
    SUCCESS = "Success"
    ERROR = "Error"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class ActionEvent:
    """One step of an instance action, recorded by the role that ran it."""

    event: str
    result: EventResult
    host: str | None = None
    start_time: dt.datetime | None = None
    finish_time: dt.datetime | None = None
    details: str | None = None


@attrs.frozen
class InstanceAction:
    """A request on an instance (Nova's ``instance_actions``) and its events.

    ``message`` is ``"Error"`` once one of its events failed, as in Nova.
    """

    request_id: str
    instance_uuid: str
    action: str
    project_id: str | None
    user_id: str
    start_time: dt.datetime
    events: tuple[ActionEvent, ...] = ()
    message: str | None = None


@attrs.frozen
class Notification:
    """A versioned notification, with the instance's state at the time it was sent.

    The store keeps notifications in the order they were sent.
    """

    event_type: str
    instance_uuid: str | None
    host: str | None
    vm_state: VmState | None
    task_state: TaskState | None
    timestamp: dt.datetime
    payload: dict[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class Fault:
    """An instance fault (Nova's ``instance_faults``): why a step failed."""

    instance_uuid: str
    code: int
    message: str
    exception_type: str
    host: str | None
    created_at: dt.datetime


class Outcome(enum.StrEnum):
    """How a request ended. ``pending`` until the cloud has settled it.

    ``rolled_back``: it failed and the instance is as it was before (NoValidHost, a
    driver error that left the guest intact). ``failed``: it failed and the instance needs
    attention (vm_state ``error``, a fault recorded).
    """

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class RequestRecord:
    """One accepted request and, once settled, its outcome and error."""

    request_id: str
    action: str
    instance_uuid: str
    outcome: Outcome = Outcome.PENDING
    error_type: str | None = None
    error_message: str | None = None
