"""records.replace: attrs.evolve's result, validating only what changed."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from coldmig_fsm import Instance, TaskState, VmState
from coldmig_fsm.records import Migration, replace
from coldmig_fsm.states import MigrationStatus, MigrationType


def _instance() -> Instance:
    return Instance("u1", "vm1", "demo", "host-a", "m1.tiny", system_metadata={"k": "v"})


def test_replace_returns_what_evolve_returns() -> None:
    record = _instance()
    changes: dict[str, Any] = {
        "vm_state": VmState.RESIZED,
        "task_state": TaskState.RESIZE_FINISH,
        "host": "b",
    }
    copied = replace(record, **changes)
    assert copied == attrs.evolve(record, **changes)
    assert copied is not record
    assert (copied.host, copied.node, record.host) == ("b", "host-a", "host-a")


def test_replace_with_no_change_is_an_equal_copy() -> None:
    record = _instance()
    copied = replace(record)
    assert copied == record and copied is not record


def test_replace_runs_the_changed_fields_converter() -> None:
    # The converter copies the mapping: changing the caller's dict afterwards changes
    # nothing in the record.
    given = {"a": "1"}
    copied = replace(_instance(), system_metadata=given)
    given["a"] = "2"
    assert copied.system_metadata == {"a": "1"}
    assert copied.system_metadata is not given


def test_replace_runs_the_changed_fields_validator() -> None:
    with pytest.raises(ValueError, match="'host' must be >= 1"):
        replace(_instance(), host="")


def test_replace_refuses_a_field_the_class_does_not_have() -> None:
    with pytest.raises(TypeError, match="Instance has no field 'hots' to replace"):
        replace(_instance(), hots="b")  # type: ignore[call-arg]


def test_replace_runs_post_init() -> None:
    # Instance defaults node to host in __attrs_post_init__, as evolve would.
    assert replace(_instance(), node=None, host="host-c").node == "host-c"


def test_replace_copies_a_migration() -> None:
    migration = Migration(
        1, "m-1", "u1", MigrationType.MIGRATION, MigrationStatus.PRE_MIGRATING, "a", "f", "f"
    )
    done = replace(migration, status=MigrationStatus.FINISHED)
    assert done == attrs.evolve(migration, status=MigrationStatus.FINISHED)
    assert migration.status is MigrationStatus.PRE_MIGRATING


def test_replace_takes_a_private_field_by_its_init_name_and_copies_unslotted_classes() -> None:
    @attrs.define(slots=False)
    class Plain:
        value: int

    @attrs.frozen
    class Private:
        _secret: str

    assert replace(Plain(1), value=2) == Plain(2)
    assert replace(Private("a"), secret="b") == Private("b")
