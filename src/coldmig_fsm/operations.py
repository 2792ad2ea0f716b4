"""The operations a caller can ask for, each declared once.

:data:`OPERATIONS` is the one list: for each :class:`Op`, Nova's instance-action name, the
policy rule that guards it, what it takes besides the instance (a target host, a
flavor), the first message it sends (its request's first hop) and whether Nova has it.
Everything that enumerates operations reads it: the API (action names, policy), the
transition table (the policy of each API rule, and a check at import that the API rules
and the operations agree), :class:`~coldmig_fsm.Cloud` (``Cloud.request``), the scenario
runner (the step ops and their keys), the explorer and the model checker, the
Hypothesis machine and the failure table.

Invariants (checked at import, :func:`_check`): every ``Op`` has exactly one entry, under
its own key; an operation that changes the machine state is a trigger of the table's API
role with the same policy; the others (``lock``, ``unlock``) change only the record.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs

from coldmig_fsm.guards import PolicyRule
from coldmig_fsm.messages import KINDS

__all__ = ["OPERATIONS", "Argument", "Op", "OperationSpec", "admin_only"]


class Op(enum.StrEnum):
    """An operation on one instance; the value is the scenario format's ``op``."""

    MIGRATE = "migrate"
    RESIZE = "resize"
    CONFIRM_RESIZE = "confirm_resize"
    REVERT_RESIZE = "revert_resize"
    STOP = "stop"
    START = "start"
    LOCK = "lock"
    UNLOCK = "unlock"
    DELETE = "delete"
    ABORT_MIGRATION = "abort_migration"


class Argument(enum.StrEnum):
    """What an operation takes besides the instance (the scenario step's key)."""

    HOST = "host"  # optional: an explicit target host
    FLAVOR = "flavor"  # required: the new flavor


@attrs.frozen
class OperationSpec:
    """One operation as declared.

    Attributes:
        op: the operation.
        action: Nova's instance-action name (``InstanceAction.action``).
        policy: who may ask (Nova's default policy).
        argument: what it takes besides the instance, if anything.
        required: whether ``argument`` must be given.
        first_message: the kind of the first message its request sends, ``None`` when
            the API completes it at once.
        changes_state: whether it is a trigger of the transition table (the API role);
            ``lock``/``unlock`` change only the instance record.
        in_nova: ``False`` for what this library adds (``abort_migration``).
        summary: one line for tables and help.
    """

    op: Op
    action: str
    policy: PolicyRule
    summary: str
    argument: Argument | None = None
    required: bool = False
    first_message: str | None = None
    changes_state: bool = True
    in_nova: bool = True

    @property
    def step_keys(self) -> frozenset[str]:
        """The keys of its scenario step besides ``op``."""
        keys = {"instance", "as"}
        if self.argument is not None:
            keys.add(self.argument.value)
        return frozenset(keys)

    @property
    def required_step_keys(self) -> frozenset[str]:
        keys = {"instance"}
        if self.argument is not None and self.required:
            keys.add(self.argument.value)
        return frozenset(keys)


_ADMIN, _ANYONE = PolicyRule.ADMIN, PolicyRule.ADMIN_OR_OWNER

_DECLARED: Final = (
    OperationSpec(
        Op.MIGRATE,
        "migrate",
        _ADMIN,
        "cold migration, flavor unchanged (optionally to a target host)",
        Argument.HOST,
        first_message="migrate_server",
    ),
    OperationSpec(
        Op.RESIZE,
        "resize",
        _ANYONE,
        "cold migration to a new flavor",
        Argument.FLAVOR,
        required=True,
        first_message="migrate_server",
    ),
    OperationSpec(
        Op.CONFIRM_RESIZE,
        "confirmResize",
        _ANYONE,
        "confirm a finished migration or resize",
        first_message="confirm_resize",
    ),
    OperationSpec(
        Op.REVERT_RESIZE,
        "revertResize",
        _ANYONE,
        "revert a finished migration or resize",
        first_message="revert_resize",
    ),
    OperationSpec(Op.STOP, "stop", _ANYONE, "power off", first_message="stop_instance"),
    OperationSpec(Op.START, "start", _ANYONE, "power on", first_message="start_instance"),
    OperationSpec(Op.LOCK, "lock", _ANYONE, "lock the instance", changes_state=False),
    OperationSpec(
        Op.UNLOCK,
        "unlock",
        _ANYONE,
        "unlock (an admin's lock: admin only)",
        changes_state=False,
    ),
    OperationSpec(
        Op.DELETE, "delete", _ANYONE, "delete the instance", first_message="terminate_instance"
    ),
    OperationSpec(
        Op.ABORT_MIGRATION,
        "abortMigration",
        _ADMIN,
        "cancel a cold migration before finish_resize (not in Nova)",
        first_message="abort_migration",
        in_nova=False,
    ),
)

OPERATIONS: Final[Mapping[Op, OperationSpec]] = MappingProxyType(
    {spec.op: spec for spec in _DECLARED}
)
"""Every operation, in the order of :class:`Op`."""


def admin_only(op: Op | str) -> bool:
    """Whether only an admin may ask for ``op`` (by default policy)."""
    return OPERATIONS[Op(op)].policy is PolicyRule.ADMIN


def _check() -> None:
    """The declarations are complete and name only message kinds that exist."""
    if [spec.op for spec in _DECLARED] != list(Op):
        raise TypeError("operations.py: declare every Op exactly once, in the order of Op")
    for spec in _DECLARED:
        if spec.first_message is not None and spec.first_message not in KINDS:
            raise TypeError(f"operations.py: {spec.op}: unknown message {spec.first_message!r}")
        if spec.required and spec.argument is None:
            raise TypeError(f"operations.py: {spec.op}: a required argument needs a name")


_check()
