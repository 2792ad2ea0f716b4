"""What a failed move leaves on the instance record, as observed on Nova 34.

Pinned by the probes ``tests/scenarios/fault-finish-resize-raise.yaml`` and
``delete-after-failed-*.yaml``, which ``make test`` also runs through Nova.
"""

from __future__ import annotations

import pytest

from coldmig_fsm import Cloud, FakeFault, Outcome, UnexpectedTaskStateError, VmState
from coldmig_fsm.verification.invariants import violations
from tests.conftest import make_cloud, snapshot


def arm(cloud: Cloud, host: str, call: str) -> None:
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault(host, call, message="injected"))


def test_failed_finish_migration_on_a_resize_puts_the_old_flavor_back() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    arm(cloud, "host-b", "finish_migration")
    result = cloud.resize("vm1", "m1.small").wait()
    assert (result.outcome, result.error_type) == (Outcome.FAILED, "HypervisorError")
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("error", None, "host-b")
    assert (snap["flavor"], snap["old_flavor"], snap["new_flavor"]) == (
        "m1.tiny",
        "m1.tiny",
        "m1.small",
    )
    # The dest claim (new flavor) stays, the source claim is dropped.
    assert snap["usage"] == {"host-a": (0, 0, 0), "host-b": (1, 2048, 20)}
    assert snap["migrations"] == [("error", "host-a", "host-b")]


def test_delete_after_a_failed_move_keeps_the_stashed_flavors_and_cleans_every_host() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    arm(cloud, "host-b", "finish_migration")
    assert cloud.resize("vm1", "m1.small").wait().outcome is Outcome.FAILED
    # The failed define left the guest on the source only, while the instance's host is
    # the dest: Nova's delete destroys on host-b alone and leaks host-a's guest.
    assert snapshot(cloud)["domains"] == {"host-a": ["vm1"], "host-b": []}
    assert cloud.instance("vm1").host == "host-b"
    assert cloud.delete("vm1").wait().ok
    gone = cloud.store.get_instance(cloud.instance("vm1").uuid)
    assert (gone.vm_state, gone.flavor, gone.old_flavor, gone.new_flavor) == (
        VmState.DELETED,
        "m1.tiny",
        "m1.tiny",
        "m1.small",
    )
    assert gone.migration_id is None
    assert snapshot(cloud)["domains"] == {"host-a": [], "host-b": []}
    assert snapshot(cloud)["usage"] == {"host-a": (0, 0, 0), "host-b": (0, 0, 0)}


def test_delete_of_a_resized_instance_confirms_and_clears_the_flavors() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.resize("vm1", "m1.small").wait().ok
    assert cloud.delete("vm1").wait().ok
    gone = cloud.instance("vm1")
    assert (gone.vm_state, gone.flavor, gone.old_flavor, gone.new_flavor) == (
        VmState.DELETED,
        "m1.small",
        None,
        None,
    )


def test_failed_delete_halfway_through_a_revert_ends_on_the_source_with_its_claim() -> None:
    # Found by the model checker (1 instance, 2 hosts, 3 requests, 1 fault): the revert's
    # dest half ran (dest guest and claim gone), the delete overtook its source half, and
    # destroying the source guest failed.
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().ok
    cloud.revert_resize("vm1")
    cloud.step()  # revert_resize on host-b
    assert snapshot(cloud)["domains"] == {"host-a": ["vm1"], "host-b": []}
    deleting = cloud.delete("vm1")
    arm(cloud, "host-a", "destroy")
    cloud.run()
    assert deleting.result is not None
    assert (deleting.result.outcome, deleting.result.error_type) == (
        Outcome.FAILED,
        "HypervisorError",
    )
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("error", None, "host-a")
    assert snap["usage"] == {"host-a": (1, 512, 1), "host-b": (0, 0, 0)}
    assert snap["migrations"] == [("error", "host-a", "host-b")]
    assert snap["domains"] == {"host-a": ["vm1"], "host-b": []}
    assert [f.exception_type for f in cloud.faults("vm1")] == ["HypervisorError"]
    assert violations(cloud) == []


def the_next_move_abandons_the_leftover(cloud: Cloud) -> None:
    """vm1 (on host-b, after a failed revert from host-b to host-a whose errored migration
    still claims host-a) moves again: not to host-a, and the leftover claim is released."""
    assert cloud.preflight("vm1").host == "host-c"  # not host-a, where the leftover is
    assert cloud.migrate("vm1").wait().ok
    snap = snapshot(cloud)
    assert snap["migrations"] == [("error", "host-a", "host-b"), ("finished", "host-b", "host-c")]
    assert snap["usage"] == {"host-a": (0, 0, 0), "host-b": (1, 512, 1), "host-c": (1, 512, 1)}
    assert violations(cloud) == []


def test_a_new_move_abandons_what_a_failed_revert_left() -> None:
    # Found by the Hypothesis machine: a failed revert leaves the source claim on the
    # errored migration; a later move must not count the instance twice on that host.
    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1", "host-b").wait().ok
    arm(cloud, "host-b", "destroy")
    assert cloud.revert_resize("vm1").wait().outcome is Outcome.FAILED
    first = cloud.migrations("vm1")[0]
    assert (cloud.instance("vm1").vm_state, first.status.value) == (VmState.ERROR, "error")
    assert snapshot(cloud)["usage"] == {
        "host-a": (1, 512, 1),  # the errored migration's leftover
        "host-b": (1, 512, 1),
        "host-c": (0, 0, 0),
    }
    assert cloud.preflight("vm1").host is None  # still in error: refused
    assert cloud.stop("vm1").wait().ok
    the_next_move_abandons_the_leftover(cloud)
    assert cloud.delete("vm1").wait().ok
    assert snapshot(cloud)["domains"] == {"host-a": [], "host-b": [], "host-c": []}


def test_failed_delete_after_a_failed_revert_leaves_everything_where_it_was() -> None:
    # The revert's destroy on the destination failed (the instance in error there, its
    # errored migration still holding the source claim); the delete's destroy there fails
    # too. This is not a delete during a revert: the instance stays where its guest runs,
    # with both claims (found with invariant 8 and 3 requests, 2 faults, on a mutant that
    # took it for one).
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().ok
    arm(cloud, "host-b", "destroy")
    assert cloud.revert_resize("vm1").wait().outcome is Outcome.FAILED
    before = snapshot(cloud)
    assert (before["vm_state"], before["host"]) == ("error", "host-b")
    assert before["usage"] == {"host-a": (1, 512, 1), "host-b": (1, 512, 1)}
    arm(cloud, "host-b", "destroy")
    deleting = cloud.delete("vm1").wait()
    assert (deleting.outcome, deleting.error_type) == (Outcome.FAILED, "HypervisorError")
    assert snapshot(cloud) == before
    assert [f.exception_type for f in cloud.faults("vm1")] == ["HypervisorError"] * 2
    assert violations(cloud) == []


def test_a_driver_bug_fails_the_step_with_a_fault_of_code_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An error that is not this library's (a bug in a driver) ends the step like any
    # failure; its fault's code is 500, as Nova records an error that is no NovaException.
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")

    def broken(*_: object, **__: object) -> None:
        raise ValueError("a driver bug")

    monkeypatch.setattr(cloud.driver("host-a"), "migrate_disk_and_power_off", broken)
    result = cloud.migrate("vm1").wait()
    assert (result.outcome, result.error_type) == (Outcome.FAILED, "ValueError")
    (fault,) = cloud.faults("vm1")
    assert (fault.code, fault.exception_type, fault.message, fault.host) == (
        500,
        "ValueError",
        "a driver bug",
        "host-a",
    )
    assert snapshot(cloud)["vm_state"] == "error"
    assert violations(cloud) == []
    # One of this library's errors is recorded with its own code.
    cloud.runtime.fault(cloud.instance("vm1"), UnexpectedTaskStateError("lost"), "host-a")
    assert [(f.code, f.exception_type) for f in cloud.faults("vm1")] == [
        (500, "ValueError"),
        (409, "UnexpectedTaskStateError"),
    ]
