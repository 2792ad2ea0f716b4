"""The facts about a move that several roles share (``roles/moves.py``): pure functions of
a migration record and a task_state."""

from __future__ import annotations

import pytest

from coldmig_fsm.records import Migration
from coldmig_fsm.roles.moves import guest_touched, rollback_hosts
from coldmig_fsm.states import MigrationStatus, MigrationType, TaskState


def _migration(source: str, dest: str | None) -> Migration:
    return Migration(
        id=1,
        uuid="m-1",
        instance_uuid="i-1",
        migration_type=MigrationType.MIGRATION,
        status=MigrationStatus.MIGRATING,
        source_compute=source,
        old_flavor="m1.tiny",
        new_flavor="m1.tiny",
        dest_compute=dest,
    )


@pytest.mark.parametrize(
    ("task_state", "touched"),
    [
        (None, False),
        (TaskState.RESIZE_PREP, False),
        # From resize_migrating on the source guest is off and the disks are travelling.
        (TaskState.RESIZE_MIGRATING, True),
        (TaskState.RESIZE_MIGRATED, True),
    ],
)
def test_the_guest_is_touched_from_the_copy_on(task_state: TaskState | None, touched: bool) -> None:
    assert guest_touched(task_state) is touched


@pytest.mark.parametrize(
    ("source", "dest", "task_state", "hosts"),
    [
        # The copy ran: the destination cleans up first, then the source restores.
        ("host-a", "host-b", TaskState.RESIZE_MIGRATING, ("host-b", "host-a")),
        ("host-a", "host-b", TaskState.RESIZE_MIGRATED, ("host-b", "host-a")),
        # Whichever way the names sort.
        ("host-b", "host-a", TaskState.RESIZE_MIGRATED, ("host-a", "host-b")),
        # The copy never started: nothing of the move is on the destination.
        ("host-a", "host-b", TaskState.RESIZE_PREP, ("host-a",)),
        # No destination chosen yet (the conductor's step was lost).
        ("host-a", None, TaskState.RESIZE_PREP, ("host-a",)),
        ("host-a", None, TaskState.RESIZE_MIGRATING, ("host-a",)),
        # A resize on its own host: that host is visited once.
        ("host-a", "host-a", TaskState.RESIZE_MIGRATED, ("host-a",)),
    ],
)
def test_a_rollback_visits_the_destination_only_when_the_copy_may_have_left_something(
    source: str, dest: str | None, task_state: TaskState, hosts: tuple[str, ...]
) -> None:
    assert rollback_hosts(_migration(source, dest), task_state) == hosts


def test_a_move_with_no_migration_record_has_nothing_to_roll_back() -> None:
    assert rollback_hosts(None, TaskState.RESIZE_PREP) == ()
