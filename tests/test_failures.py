"""Driver failures already end in the spec's documented states (no stuck task_state).

The full failure matrix (crash, hang, restarts, abort) belongs to the failure-semantics
work; these pin the rows the core already implements.
"""

from __future__ import annotations

import attrs

from coldmig_fsm import (
    Cloud,
    CloudConfig,
    DriverCapabilities,
    FakeFault,
    Host,
    Outcome,
    Resources,
    VmState,
    messages,
)
from coldmig_fsm.drivers import FakeHypervisor
from tests.conftest import FLAVORS, ContendedStore, events, make_cloud, notifications, snapshot

TINY = (1, 512, 1)
NONE = (0, 0, 0)


def arm(cloud: Cloud, host: str, call: str, *, rollback: bool = False) -> None:
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault(host, call, message="injected", rollback=rollback))


def test_error_in_migrate_disk_and_power_off(cloud: Cloud) -> None:
    arm(cloud, "host-a", "migrate_disk_and_power_off")
    result = cloud.migrate("vm1").wait()
    assert (result.outcome, result.error_type) == (Outcome.FAILED, "HypervisorError")
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("error", None, "host-a")
    assert snap["migrations"] == [("error", "host-a", "host-b")]
    assert snap["usage"] == {"host-a": TINY, "host-b": NONE}
    assert notifications(cloud)[-2:] == ["instance.resize.start", "compute.exception"]
    assert events(cloud)[0][1][-1] == ("compute_resize_instance", "Error")
    assert [f.message for f in cloud.faults("vm1")] == ["injected"]


def test_rollback_in_migrate_disk_and_power_off(cloud: Cloud) -> None:
    arm(cloud, "host-a", "migrate_disk_and_power_off", rollback=True)
    result = cloud.migrate("vm1").wait()
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "HypervisorError")
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"], snap["power_state"]) == (
        "active",
        None,
        "host-a",
        "running",
    )
    assert snap["usage"] == {"host-a": TINY, "host-b": NONE}
    assert [f.exception_type for f in cloud.faults("vm1")] == ["HypervisorError"]


def test_error_in_finish_migration(cloud: Cloud) -> None:
    arm(cloud, "host-b", "finish_migration")
    assert cloud.migrate("vm1").wait().outcome is Outcome.FAILED
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("error", None, "host-b")
    assert snap["migrations"] == [("error", "host-a", "host-b")]
    assert snap["usage"] == {"host-a": NONE, "host-b": TINY}


def test_error_in_confirm_migration(cloud: Cloud) -> None:
    cloud.migrate("vm1").wait()
    arm(cloud, "host-a", "confirm_migration")
    assert cloud.confirm_resize("vm1").wait().outcome is Outcome.FAILED
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["host"]) == ("error", "host-b")
    assert snap["usage"] == {"host-a": NONE, "host-b": TINY}
    assert snap["domains"] == {"host-a": ["vm1"], "host-b": ["vm1"]}
    assert snap["migrations"] == [("error", "host-a", "host-b")]


def test_error_in_revert_destroy_keeps_claims_counted_once(cloud: Cloud) -> None:
    cloud.migrate("vm1").wait()
    arm(cloud, "host-b", "destroy")
    assert cloud.revert_resize("vm1").wait().outcome is Outcome.FAILED
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"]) == ("error", None)
    assert snap["usage"] == {"host-a": TINY, "host-b": TINY}
    assert snap["migrations"] == [("error", "host-a", "host-b")]


def test_prep_failure_reschedules_to_the_next_alternate() -> None:
    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    # host-b is chosen first; another claim fills it between scheduling and prep_resize.
    # The failed attempt's migration never got a destination filled in.
    cloud.migrate("vm1")
    cloud.step()  # conductor picked host-b, alternates host-c
    cloud.store.set_allocations("hog", {"host-b": Resources(8, 0, 0)})
    assert cloud.run() > 0
    snap = snapshot(cloud)
    assert snap["migrations"] == [("error", "host-a", None), ("finished", "host-a", "host-c")]
    assert snap["vm_state"] == "resized"
    assert events(cloud)[0][1][:5] == [
        ("conductor_migrate_server", "Success"),
        ("cold_migrate", "Success"),
        ("compute_prep_resize", "Error"),
        ("conductor_migrate_server", "Success"),
        ("cold_migrate", "Success"),
    ]


def test_a_storm_of_writers_on_the_destination_reschedules_to_the_next_alternate() -> None:
    # Before: the GenerationConflict of try_claim escaped prep_resize as a traceback.
    hosts = [Host("host-a", 8, 16384, 200), Host("host-b", 8, 16384, 200)]
    store = ContendedStore("host-b")
    cloud = Cloud.build([*hosts, Host("host-c", 8, 16384, 100)], FLAVORS, store=store)
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().ok  # host-b first (more free disk), then host-c
    assert store.tries == 16
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["host"], snap["migrations"], snap["usage"]) == (
        "resized",
        "host-c",
        [("error", "host-a", None), ("finished", "host-a", "host-c")],
        # The others' claims were made inside the hop's transaction: undone with it.
        {"host-a": TINY, "host-b": NONE, "host-c": TINY},
    )
    prep = cloud.actions("vm1")[0].events[2]
    assert (prep.event, prep.result.value, prep.host, prep.details) == (
        "compute_prep_resize",
        "Error",
        "host-b",
        "ComputeResourcesUnavailable: Could not claim on host-b for flavor m1.tiny: its "
        "allocations changed under 16 claims in a row",
    )


def test_each_reschedule_counts_one_attempt_of_max_attempts() -> None:
    # max_attempts 3 (the default): the first choice and two alternates are tried.
    cloud = make_cloud(4)
    cloud.boot("vm1", "m1.tiny", "host-a")
    operation = cloud.migrate("vm1")
    for hog, host in (("hog-b", "host-b"), ("hog-c", "host-c")):
        cloud.step()  # the conductor picks the next host: another claim fills it first
        cloud.store.set_allocations(hog, {host: Resources(8, 0, 0)})
        cloud.step()  # prep_resize there fails: rescheduled
    assert operation.wait().ok
    assert snapshot(cloud)["migrations"] == [
        ("error", "host-a", None),
        ("error", "host-a", None),
        ("finished", "host-a", "host-d"),
    ]


def test_prep_failure_with_no_alternate_left_is_max_retries_exceeded() -> None:
    cloud = make_cloud(2, config=CloudConfig(max_attempts=1))
    cloud.boot("vm1", "m1.tiny", "host-a")
    operation = cloud.migrate("vm1")
    cloud.step()  # conductor picked host-b and no alternate
    cloud.store.set_allocations("hog", {"host-b": Resources(8, 0, 0)})
    result = operation.wait()
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "MaxRetriesExceeded")
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["usage"]) == (
        "active",
        None,
        {"host-a": TINY, "host-b": (8, 0, 0)},
    )
    assert snap["migrations"] == [("error", "host-a", None), ("error", "host-a", None)]
    assert events(cloud)[0][1] == [
        ("conductor_migrate_server", "Success"),
        ("cold_migrate", "Success"),
        ("compute_prep_resize", "Error"),
        ("conductor_migrate_server", "Error"),
        ("cold_migrate", "Error"),
    ]
    assert notifications(cloud)[-1] == "compute_task.migrate_server.error"


def test_same_host_migrate_refused_by_the_driver_at_prep() -> None:
    hv = FakeHypervisor(capabilities=DriverCapabilities(supports_migrate_to_same_host=False))
    cloud = Cloud.build(
        [Host("host-a", 8, 16384, 200), Host("host-b", 8, 16384, 200)], FLAVORS, hypervisor=hv
    )
    cloud.boot("vm1", "m1.tiny", "host-a")
    operation = cloud.migrate("vm1")
    cloud.step()
    (prep,) = cloud.pending()
    assert isinstance(prep, messages.PrepResize)
    # Route the prep to the source itself, as a confused scheduler might.
    cloud.store.pop_message()
    cloud.store.push_message(attrs.evolve(prep, host="host-a", alternates=("host-b",)))
    assert operation.wait().ok
    snap = snapshot(cloud)
    assert snap["migrations"] == [("error", "host-a", None), ("finished", "host-a", "host-b")]
    assert cloud.actions("vm1")[0].events[2].details is not None
    assert "UnableToMigrateToSelf" in (cloud.actions("vm1")[0].events[2].details or "")


def test_a_failed_power_off_ending_a_revert_of_a_stopped_instance_ends_it_in_error() -> None:
    # The revert's guest is back on the source; stopping it again fails: the instance
    # and the move end in error there, and the revert announces no end.
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a", vm_state=VmState.STOPPED)
    assert cloud.migrate("vm1").wait().ok
    before = len(cloud.notifications())
    arm(cloud, "host-a", "power_off")
    result = cloud.revert_resize("vm1").wait()
    assert (result.outcome, result.error_type, result.error_message) == (
        Outcome.FAILED,
        "HypervisorError",
        "injected",
    )
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"], snap["migrations"]) == (
        "error",
        None,
        "host-a",
        [("error", "host-a", "host-b")],
    )
    assert snap["usage"] == {"host-a": TINY, "host-b": NONE}
    assert [n.event_type for n in cloud.notifications()[before:]] == [
        "instance.exists",
        "instance.resize_revert.start",
        "instance.power_off.start",
        "compute.exception",
    ]
