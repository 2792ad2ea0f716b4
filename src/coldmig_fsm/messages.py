"""The messages that travel between roles: one per hop.

An orchestrator that runs each role in its own service moves these between them (they
are plain ``attrs`` records; :func:`to_dict`/:func:`from_dict` turn them into JSON-ready
dicts and back). In one process, :class:`coldmig_fsm.Cloud` queues them in the store and
delivers them one at a time, so that faults, crashes and races can be injected between
any two hops.

Every message names the request it belongs to (``request_id``) and the instance; its
:attr:`destination` says which role handles it: ``"conductor"`` or ``"compute:<host>"``.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import attrs
import cattrs

__all__ = [
    "AbortMigration",
    "ConfirmResize",
    "DeletePhase",
    "FinishResize",
    "FinishRevertResize",
    "Message",
    "MigrateServer",
    "PrepResize",
    "ResizeInstance",
    "RevertResize",
    "RollBackMove",
    "StartInstance",
    "StopInstance",
    "TerminateInstance",
    "from_dict",
    "to_dict",
]

CONDUCTOR = "conductor"


@attrs.frozen
class Message:
    """Base of every message."""

    request_id: str
    instance_uuid: str
    kind: ClassVar[str] = "message"

    @property
    def destination(self) -> str:
        raise NotImplementedError


@attrs.frozen
class _ToCompute(Message):
    host: str

    @property
    def destination(self) -> str:
        return f"compute:{self.host}"


@attrs.frozen
class MigrateServer(Message):
    """API → conductor: schedule the move (or the next alternate, when ``hosts`` is set).

    ``hosts`` empty means "ask the scheduler"; otherwise the conductor tries ``hosts[0]``
    and keeps the rest as alternates (a reschedule). ``attempt`` counts hosts tried.
    """

    flavor_id: str
    target_host: str | None = None
    hosts: tuple[str, ...] = ()
    attempt: int = 1
    kind: ClassVar[str] = "migrate_server"

    @property
    def destination(self) -> str:
        return CONDUCTOR


@attrs.frozen
class PrepResize(_ToCompute):
    """Conductor → destination compute: claim and prepare. ``host`` is the destination."""

    migration_id: int
    flavor_id: str
    alternates: tuple[str, ...] = ()
    attempt: int = 1
    kind: ClassVar[str] = "prep_resize"


@attrs.frozen
class ResizeInstance(_ToCompute):
    """Destination → source compute: power off and copy. ``host`` is the source."""

    migration_id: int
    kind: ClassVar[str] = "resize_instance"


@attrs.frozen
class FinishResize(_ToCompute):
    """Source → destination compute: define the guest there. ``host`` is the destination."""

    migration_id: int
    disks: tuple[str, ...] = ()
    bytes_copied: int = 0
    kind: ClassVar[str] = "finish_resize"


@attrs.frozen
class ConfirmResize(_ToCompute):
    """API → source compute: remove the source guest. ``host`` is the source."""

    migration_id: int
    kind: ClassVar[str] = "confirm_resize"


@attrs.frozen
class RevertResize(_ToCompute):
    """API → destination compute: remove the new guest. ``host`` is the destination."""

    migration_id: int
    kind: ClassVar[str] = "revert_resize"


@attrs.frozen
class FinishRevertResize(_ToCompute):
    """Destination → source compute: bring the old guest back. ``host`` is the source."""

    migration_id: int
    kind: ClassVar[str] = "finish_revert_resize"


@attrs.frozen
class AbortMigration(_ToCompute):
    """API → compute: roll back a move that has not reached ``finish_resize`` (not in
    Nova); the migration is already ``cancelling``. ``host`` is the destination when
    its disks must be removed first (it then sends the message on to the source with
    ``on_source``), else the source."""

    migration_id: int
    on_source: bool = False
    kind: ClassVar[str] = "abort_migration"


@attrs.frozen
class RollBackMove(_ToCompute):
    """Start-up recovery → compute: undo a move interrupted before ``finish_resize``
    (the destination removes its disks, then the source brings the guest back).

    ``reason`` is what interrupted the move (recorded with the fault and the move's
    outcome); ``also_settles`` are the instance's other open requests, settled with this
    one when it ends. ``migration_id`` ``None``: the conductor never created a record.
    """

    migration_id: int | None
    reason: str
    on_source: bool = False
    also_settles: tuple[str, ...] = ()
    kind: ClassVar[str] = "roll_back_move"


@attrs.frozen
class StopInstance(_ToCompute):
    """API → the instance's compute: power off. ``also_settles``: (start-up recovery)
    other open requests of the instance, settled as this one is."""

    also_settles: tuple[str, ...] = ()
    kind: ClassVar[str] = "stop_instance"


@attrs.frozen
class StartInstance(_ToCompute):
    """API → the instance's compute: power on (``also_settles`` as for a stop)."""

    also_settles: tuple[str, ...] = ()
    kind: ClassVar[str] = "start_instance"


class DeletePhase(enum.StrEnum):
    """Where a delete is: each phase runs on one host's compute service."""

    CONFIRM = "confirm"
    """On the source of a ``resized`` instance's move: confirm it (remove the source guest)."""
    DELETE = "delete"
    """On the instance's host: destroy its guest there."""
    CLEAN = "clean"
    """On another host that may still hold a guest or disks of the instance (a failed
    move's): destroy them there."""
    FINISH = "finish"
    """Back on the instance's host: the records (deleted, claims released)."""


@attrs.frozen
class TerminateInstance(_ToCompute):
    """Delete an instance, one host at a time (see :class:`DeletePhase`).

    For a ``resized`` instance the API has already moved its migration to
    ``confirming`` under ``confirm_request_id`` and sends the first message to the
    move's source (phase ``confirm``), as Nova's ``_confirm_resize_on_deleting`` does;
    otherwise to the instance's host (phase ``delete``). ``clean`` are the hosts still to
    visit after this one; ``also_settles`` as for :class:`StopInstance`.
    """

    confirm_request_id: str | None = None
    migration_id: int | None = None
    phase: DeletePhase = DeletePhase.DELETE
    clean: tuple[str, ...] = ()
    also_settles: tuple[str, ...] = ()
    kind: ClassVar[str] = "terminate_instance"


KINDS: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (
        MigrateServer,
        PrepResize,
        ResizeInstance,
        FinishResize,
        ConfirmResize,
        RevertResize,
        FinishRevertResize,
        AbortMigration,
        RollBackMove,
        StopInstance,
        StartInstance,
        TerminateInstance,
    )
}

_converter = cattrs.Converter()


def to_dict(message: Message) -> dict[str, Any]:
    """A JSON-ready dict with a ``kind`` key naming the message type."""
    data: dict[str, Any] = _converter.unstructure(message)
    data["kind"] = message.kind
    return data


def from_dict(data: dict[str, Any]) -> Message:
    """Inverse of :func:`to_dict`; raises ``ValueError`` on an unknown ``kind``."""
    fields = dict(data)
    kind = fields.pop("kind", None)
    cls = KINDS.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown message kind {kind!r}")
    return _converter.structure(fields, cls)
