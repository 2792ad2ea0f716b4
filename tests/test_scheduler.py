"""Scheduling: ignore the source, explicit target, capacity counting claims, host status."""

from __future__ import annotations

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
from coldmig_fsm.scheduler import Candidate, rank_hosts
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
def test_down_or_disabled_hosts_are_not_chosen(status: dict[str, bool]) -> None:
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
        Candidate("b", Resources(4, 4096, 50)),
        Candidate("a", Resources(4, 4096, 50)),
        Candidate("c", Resources(8, 8192, 100)),
        Candidate("d", Resources(0, 8192, 100)),  # no vCPU left: filtered
    ]
    assert rank_hosts(candidates, wanted) == ["c", "a", "b"]
    assert rank_hosts([], wanted) == []


def test_owner_resize_uses_same_scheduler() -> None:
    cloud = make_cloud(2)
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.resize("vm1", "m1.small", caller=Caller.owner("demo")).wait().ok
    assert cloud.instance("vm1").host == "host-b"
