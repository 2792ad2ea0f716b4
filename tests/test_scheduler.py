"""Scheduling: ignore the source, explicit target, capacity counting claims, host status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from coldmig_fsm import (
    Caller,
    Cloud,
    CloudConfig,
    DriverCapabilities,
    FakeHypervisor,
    Host,
    NoValidHost,
    Outcome,
    Resources,
)
from coldmig_fsm.roles import claims
from coldmig_fsm.roles.scheduler import (
    DEFAULT_WEIGHERS,
    HostState,
    Weigher,
    host_state,
    placement_candidates,
    rank_hosts,
    weigh_hosts,
)
from coldmig_fsm.stores.memory import MemoryStore
from tests.conftest import FLAVORS, events, make_cloud, notifications, snapshot


def test_source_is_ignored_without_allow_resize_to_same_host() -> None:
    cloud = make_cloud(1)
    cloud.boot("vm1", "m1.tiny", "host-a")
    result = cloud.resize("vm1", "m1.small").wait()
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "NoValidHost")
    assert snapshot(cloud)["migrations"] == [("error", "host-a", None)]
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["task_state"]) == ("active", None)


def test_no_valid_host_leaves_the_instance_as_it_was() -> None:
    cloud = make_cloud(1)
    cloud.boot("vm1", "m1.tiny", "host-a")
    result = cloud.migrate("vm1").wait()
    assert result.error_type == "NoValidHost"
    assert "No valid host was found" in (result.error_message or "")
    assert snapshot(cloud) == {
        "vm_state": "active",
        "task_state": None,
        "power_state": "running",
        "host": "host-a",
        "flavor": "m1.tiny",
        "old_flavor": None,
        "new_flavor": None,
        "migrations": [("error", "host-a", None)],
        "usage": {"host-a": (1, 512, 1)},
        "domains": {"host-a": ["vm1"]},
    }
    assert notifications(cloud) == [
        "scheduler.select_destinations.start",
        "compute_task.migrate_server.error",
    ]
    assert events(cloud) == [
        ("migrate", [("conductor_migrate_server", "Error"), ("cold_migrate", "Error")])
    ]
    assert cloud.actions("vm1")[0].message == "Error"
    assert [f.exception_type for f in cloud.faults("vm1")] == ["NoValidHost"]
    with pytest.raises(NoValidHost):
        result.raise_for_error()


def test_same_host_migrate_needs_the_driver_capability() -> None:
    # As on Nova 34 with its fake driver: the source is not a candidate for a migrate.
    cloud = make_cloud(1, config=CloudConfig(allow_resize_to_same_host=True))
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().error_type == "NoValidHost"
    assert snapshot(cloud)["migrations"] == [("error", "host-a", None)]


def test_same_host_allowed_picks_the_source_when_it_is_the_only_fit() -> None:
    cloud = Cloud.build(
        [Host("host-a", 8, 16384, 200)],
        FLAVORS,
        config=CloudConfig(allow_resize_to_same_host=True),
        hypervisor=FakeHypervisor(
            capabilities=DriverCapabilities(supports_migrate_to_same_host=True)
        ),
    )
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().ok
    assert snapshot(cloud)["migrations"] == [("finished", "host-a", "host-a")]
    assert snapshot(cloud)["usage"] == {"host-a": (2, 1024, 2)}


def test_explicit_target_host_is_used() -> None:
    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("big", "m1.medium", "host-b")  # makes host-b the worse choice
    assert cloud.migrate("vm1", host="host-b").wait().ok
    assert snapshot(cloud)["migrations"] == [("finished", "host-a", "host-b")]


def test_explicit_target_without_room_is_no_valid_host() -> None:
    cloud = make_cloud(2, capacity=(1, 1024, 10))
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-b")
    result = cloud.migrate("vm1", host="host-b").wait()
    assert result.error_type == "NoValidHost"


def test_capacity_counts_claims_of_resized_instances() -> None:
    # host-b has room for exactly one m1.small (2048 MB).
    cloud = make_cloud(2, capacity=(4, 2048, 40))
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-a")
    assert cloud.resize("vm1", "m1.small").wait().ok  # vm1 resized: holds both hosts
    assert cloud.usage()["host-b"] == Resources(1, 2048, 20)
    result = cloud.resize("vm2", "m1.small").wait()
    assert result.error_type == "NoValidHost"
    # Confirming frees host-a's old claim, not host-b: still no room on host-b.
    assert cloud.confirm_resize("vm1").wait().ok
    assert cloud.resize("vm2", "m1.small").wait().error_type == "NoValidHost"


@pytest.mark.parametrize("status", [{"up": False}, {"enabled": False}])
def test_down_or_disabled_hosts_are_not_chosen(status: dict[str, Any]) -> None:
    cloud = make_cloud(2)
    cloud.store.put_host(Host("host-b", 8, 16384, 200, **status))
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().error_type == "NoValidHost"


def test_alternates_are_kept_up_to_max_attempts() -> None:
    cloud = make_cloud(4, config=CloudConfig(max_attempts=2))
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.migrate("vm1")
    cloud.step()
    (prep,) = cloud.pending()
    assert (prep.host, prep.alternates) == ("host-b", ("host-c",))  # type: ignore[attr-defined]


def test_ranking_spreads_by_free_resources_and_breaks_ties_by_name() -> None:
    wanted = Resources(1, 512, 1)
    candidates = [
        HostState("b", Resources(4, 4096, 50)),
        HostState("a", Resources(4, 4096, 50)),
        HostState("c", Resources(8, 8192, 100)),
        HostState("d", Resources(0, 8192, 100)),  # no vCPU left: placement offers it not
    ]
    assert rank_hosts(candidates, wanted) == ["c", "a", "b"]
    assert rank_hosts([], wanted) == []


def test_weighers_normalise_from_zero_not_from_the_minimum() -> None:
    # Free RAM 16384 vs 4096, free vCPUs 7 vs 8. Normalised from 0 (Nova's minval):
    # big = 1 + 7/8 = 1.875, small = 0.25 + 1 = 1.25, so big wins. A min..max
    # normalisation would give big 1 + 0 and small 0 + 1: a tie broken by name.
    hosts = [HostState("small", Resources(8, 4096, 100)), HostState("big", Resources(7, 16384, 90))]
    assert weigh_hosts(hosts) == [("big", 1.0 + 7 / 8 + 90 / 100), ("small", 0.25 + 1.0 + 1.0)]


def test_disk_weigher_reads_the_hypervisors_report_when_it_has_one() -> None:
    # Nova's fake driver reports disk_available_least 0: the disk weigher then gives every
    # host 0 and the RAM difference alone decides.
    reported = [
        HostState("a", Resources(8, 8192, 200), disk_available_least_gb=0),
        HostState("b", Resources(8, 8000, 10), disk_available_least_gb=0),
    ]
    assert weigh_hosts(reported) == [("a", 2.0), ("b", 8000 / 8192 + 1.0)]
    # Without a report the claims decide: b's 10 GB against a's 200.
    unreported = [HostState("a", Resources(8, 8192, 200)), HostState("b", Resources(8, 8000, 10))]
    assert weigh_hosts(unreported) == [("a", 3.0), ("b", 8000 / 8192 + 1.0 + 10 / 200)]
    # The smaller of the report and the claims counts.
    assert HostState("c", Resources(1, 1, 5), disk_available_least_gb=50).free_disk_gb == 5


def test_an_over_committed_resource_has_nothing_free_to_the_scheduler() -> None:
    # Claims past the capacity (a host whose capacity was lowered after them): what is
    # over-committed shows 0 free, Nova's floor, never a negative amount.
    store = MemoryStore()
    host = Host("host-a", 2, 1024, 10)
    store.put_host(host)
    claims.claim(store, "vm1", "host-a", Resources(1, 512, 15))
    claims.claim(store, "vm2", "host-a", Resources(2, 768, 1))
    state = host_state(store, host, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 60.0)
    assert (state.host, state.free, state.free_disk_gb) == ("host-a", Resources(0, 0, 0), 0)
    assert placement_candidates([state], Resources(0, 0, 0)) == [state]


def test_a_single_host_is_not_weighed_and_equal_values_weigh_nothing() -> None:
    assert weigh_hosts([HostState("only", Resources(8, 8192, 100))]) == [("only", 0.0)]
    equal = [HostState("x", Resources(0, 0, 0)), HostState("y", Resources(0, 0, 0))]
    assert weigh_hosts(equal) == [("x", 0.0), ("y", 0.0)]


def test_weigher_clamps_at_its_minimum_and_applies_its_multiplier() -> None:
    # A measure below the floor (RAM beyond 1024 MB here) is raised to it.
    stacking = Weigher("RAMWeigher", -2.0, lambda h: h.free.ram_mb - 1024)
    hosts = [HostState("over", Resources(0, 512, 0)), HostState("free", Resources(0, 2048, 0))]
    # -512 is clamped to 0; the multiplier -2 makes the fuller host win (stacking).
    assert stacking.weights(hosts) == [0.0, -2.0]
    assert weigh_hosts(hosts, [stacking]) == [("over", 0.0), ("free", -2.0)]
    unbounded = Weigher("IoOpsLike", 1.0, lambda h: h.free.vcpus, minval=None)
    spread = [HostState("p", Resources(2, 0, 0)), HostState("q", Resources(6, 0, 0))]
    assert unbounded.weights(spread) == [0.0, 1.0]


def test_default_weighers_are_novas_with_their_multipliers() -> None:
    assert [(w.name, w.multiplier, w.minval) for w in DEFAULT_WEIGHERS] == [
        ("RAMWeigher", 1.0, 0.0),
        ("CPUWeigher", 1.0, 0.0),
        ("DiskWeigher", 1.0, 0.0),
    ]


def test_placement_offers_enabled_hosts_that_fit_and_the_target_only() -> None:
    wanted = Resources(2, 1024, 10)
    states = [
        HostState("fits", Resources(2, 1024, 10)),
        HostState("small", Resources(1, 1024, 10)),
        HostState("disabled", Resources(8, 8192, 100), enabled=False),
        HostState("down", Resources(8, 8192, 100), up=False),
    ]
    assert [s.host for s in placement_candidates(states, wanted)] == ["fits", "down"]
    assert [s.host for s in placement_candidates(states, wanted, target_host="down")] == ["down"]
    assert placement_candidates(states, wanted, target_host="disabled") == []
    # The filters then drop the down host and the ignored ones.
    assert rank_hosts(states, wanted) == ["fits"]
    assert rank_hosts(states, wanted, ignore_hosts=["fits"]) == []


@pytest.mark.parametrize(
    ("hosts", "target", "expected"),
    [
        # no host has the resources at all: placement offers nothing
        ([Host("host-b", 8, 256, 200)], None, ["compute_task.migrate_server.error"]),
        # the target host is too small, or disabled
        ([Host("host-b", 8, 256, 200)], "host-b", ["compute_task.migrate_server.error"]),
        (
            [Host("host-b", 8, 16384, 200, enabled=False)],
            "host-b",
            ["compute_task.migrate_server.error"],
        ),
        # placement offers the down host, the ComputeFilter removes it
        (
            [Host("host-b", 8, 16384, 200, up=False)],
            None,
            ["scheduler.select_destinations.start", "compute_task.migrate_server.error"],
        ),
    ],
)
def test_no_valid_host_notifies_the_start_only_when_filters_removed_candidates(
    hosts: list[Host], target: str | None, expected: list[str]
) -> None:
    # host-a is full after vm1, so placement cannot offer the source either.
    cloud = Cloud.build([Host("host-a", 1, 512, 1), *hosts], FLAVORS)
    cloud.boot("vm1", "m1.tiny", "host-a")
    result = cloud.migrate("vm1", host=target).wait()
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "NoValidHost")
    assert notifications(cloud) == expected
    assert [f.exception_type for f in cloud.faults("vm1")] == ["NoValidHost"]


def test_owner_resize_uses_same_scheduler() -> None:
    cloud = make_cloud(2)
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.resize("vm1", "m1.small", caller=Caller.owner("demo")).wait().ok
    assert cloud.instance("vm1").host == "host-b"
