"""Compute services' capabilities and liveness, kept in the store's host records."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest

from coldmig_fsm import Cloud, CloudConfig, Host, MemoryStore, Outcome, SqliteStore, VmState
from coldmig_fsm.clock import EPOCH, ManualClock
from coldmig_fsm.drivers import FakeFault, FakeHypervisor, FaultMode
from coldmig_fsm.drivers.base import DriverCapabilities
from coldmig_fsm.exceptions import NoValidHost
from coldmig_fsm.messages import PrepResize
from coldmig_fsm.roles import scheduler, services
from coldmig_fsm.roles.compute import ComputeService
from coldmig_fsm.roles.conductor import Conductor
from coldmig_fsm.roles.runtime import Runtime
from coldmig_fsm.stores.base import HOST
from tests.conftest import FLAVORS, TINY, make_cloud, snapshot

SAME_HOST = DriverCapabilities(supports_migrate_to_same_host=True)
ALLOW_SAME_HOST = CloudConfig(allow_resize_to_same_host=True)


def record(cloud: Cloud, name: str) -> Host:
    found = cloud.store.get_host(name)
    assert found is not None
    return found


def put(cloud: Cloud, name: str, **changes: Any) -> None:
    cloud.store.put_host(attrs.evolve(record(cloud, name), **changes))


def ago(cloud: Cloud, seconds: float) -> dt.datetime:
    return cloud.clock.now() - dt.timedelta(seconds=seconds)


# -- is_up, the predicate ------------------------------------------------------------------

HOST_A = Host("host-a", 8, 16384, 200)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (HOST_A, True),  # never reported a heartbeat: nothing says it stopped
        (attrs.evolve(HOST_A, up=False), False),
        (attrs.evolve(HOST_A, heartbeat_at=EPOCH), True),
        (attrs.evolve(HOST_A, heartbeat_at=EPOCH - dt.timedelta(seconds=60)), True),
        (attrs.evolve(HOST_A, heartbeat_at=EPOCH - dt.timedelta(seconds=61)), False),
        (attrs.evolve(HOST_A, heartbeat_at=EPOCH + dt.timedelta(seconds=60)), True),
        (attrs.evolve(HOST_A, heartbeat_at=EPOCH + dt.timedelta(seconds=61)), False),
        (attrs.evolve(HOST_A, up=False, heartbeat_at=EPOCH), False),  # the mark wins
    ],
    ids=[
        "no-heartbeat",
        "marked-down",
        "fresh",
        "60s-old",
        "61s-old",
        "60s-ahead",
        "61s-ahead",
        "marked-down-fresh",
    ],
)
def test_is_up(host: Host, expected: bool) -> None:
    assert services.is_up(host, EPOCH, 60) is expected


def test_report_interval_must_be_below_service_down_time() -> None:
    assert CloudConfig().service_down_time == 60
    assert CloudConfig().report_interval == 10
    with pytest.raises(ValueError, match=r"report_interval .* less than service_down_time"):
        CloudConfig(service_down_time=10, report_interval=10)


# -- the role functions on a runtime ------------------------------------------------------


def runtime(*hosts: str) -> Runtime:
    rt = Runtime(MemoryStore(), ManualClock(), CloudConfig())
    for name in hosts:
        rt.store.put_host(Host(name, 8, 16384, 200))
    rt.store.put_flavor(TINY)
    return rt


def test_register_service_writes_capabilities_and_a_heartbeat_and_keeps_a_down_mark() -> None:
    rt = runtime("host-a")
    rt.store.put_host(Host("host-a", 8, 16384, 200, up=False))
    saved = services.register_service(rt, "host-a", SAME_HOST)
    assert saved == Host(
        "host-a",
        8,
        16384,
        200,
        up=False,
        heartbeat_at=EPOCH,
        supports_migrate_to_same_host=True,
    )
    assert rt.store.get_host("host-a") == saved
    assert services.register_service(rt, "host-z", SAME_HOST) is None  # no record
    assert services.heartbeat(rt, "host-z") is None
    assert services.mark_down(rt, "host-z") is None
    assert rt.store.get_host("host-z") is None


def test_heartbeats_expire_after_service_down_time() -> None:
    rt = runtime("host-a", "host-b")
    assert isinstance(rt.clock, ManualClock)
    for name in ("host-a", "host-b"):
        services.register_service(rt, name, DriverCapabilities())
    rt.clock.advance(45)
    services.heartbeat(rt, "host-a")  # host-b's service stopped reporting
    rt.clock.advance(15)
    assert services.down_hosts(rt) == set()  # host-b's heartbeat is 60 s old: still up
    rt.clock.advance(1)
    assert services.down_hosts(rt) == {"host-b"}
    assert services.host_is_up(rt, "host-a") is True
    assert services.host_is_up(rt, "host-b") is False
    assert services.host_is_up(rt, "host-z") is False  # no record
    states = scheduler.host_states(rt.store, rt.clock.now(), rt.config.service_down_time)
    assert [(s.host, s.up) for s in states] == [("host-a", True), ("host-b", False)]
    wanted = TINY.resources
    now, limit = rt.clock.now(), rt.config.service_down_time
    assert scheduler.select_destinations(
        rt.store, wanted, now=now, service_down_time=limit, limit=3
    ) == ["host-a"]
    services.heartbeat(rt, "host-b")
    assert services.down_hosts(rt) == set()


@pytest.mark.parametrize("make_store", [MemoryStore, lambda: SqliteStore(":memory:")])
def test_the_down_hosts_lookup_agrees_with_is_up(make_store: Any) -> None:
    store = make_store()
    offsets = [None, -120, -61, -60.5, -60, -59.999999, 0, 30, 60, 60.000001, 90]
    for n, offset in enumerate(offsets * 2):
        beat = None if offset is None else EPOCH + dt.timedelta(seconds=offset)
        store.put_host(Host(f"h{n:02}", 8, 16384, 200, up=n < len(offsets), heartbeat_at=beat))
    for seconds in (-30, 0, 0.5, 59, 60, 61, 150):
        now = EPOCH + dt.timedelta(seconds=seconds)
        expected = [h.name for h in store.list_hosts() if not services.is_up(h, now, 60)]
        assert [h.name for h in store.down_hosts(now, 60)] == expected, seconds
    store.close()


def test_a_compute_service_registers_and_heartbeats_itself() -> None:
    rt = runtime()
    assert isinstance(rt.clock, ManualClock)
    service = ComputeService(rt, FakeHypervisor().add_host("host-a"))
    assert service.report_state() is None  # no host record yet: ask again at once
    assert not service.registered
    rt.clock.advance(3)
    rt.store.put_host(Host("host-a", 8, 16384, 200))
    due = service.report_state()  # registers; the interval started at the first call
    assert service.registered and due == EPOCH + dt.timedelta(seconds=10)
    assert record_of(rt, "host-a").heartbeat_at == EPOCH + dt.timedelta(seconds=3)
    rt.clock.advance(6.999999)
    assert service.report_state() == due  # not due: nothing sent
    assert record_of(rt, "host-a").heartbeat_at == EPOCH + dt.timedelta(seconds=3)
    rt.clock.advance(0.000001)
    assert service.report_state() == EPOCH + dt.timedelta(seconds=20)
    assert record_of(rt, "host-a").heartbeat_at == EPOCH + dt.timedelta(seconds=10)
    services.mark_down(rt, "host-a")
    rt.clock.advance(10)
    assert service.report_state() == EPOCH + dt.timedelta(seconds=30)  # the interval runs
    assert record_of(rt, "host-a").heartbeat_at == EPOCH + dt.timedelta(seconds=10)  # silent
    rt.clock.advance(1)
    assert service.start()  # the down mark cleared, registered anew
    assert record_of(rt, "host-a").up
    assert record_of(rt, "host-a").heartbeat_at == EPOCH + dt.timedelta(seconds=21)


def record_of(rt: Runtime, name: str) -> Host:
    found = rt.store.get_host(name)
    assert found is not None
    return found


def test_mark_down_then_up() -> None:
    rt = runtime("host-a")
    services.register_service(rt, "host-a", DriverCapabilities())
    services.mark_down(rt, "host-a")
    services.heartbeat(rt, "host-a")  # a heartbeat does not clear the mark
    assert services.down_hosts(rt) == {"host-a"}
    services.mark_up(rt, "host-a")
    assert services.down_hosts(rt) == set()


# -- same-host decisions read the capability from the host record ------------------------


def test_the_conductor_takes_no_drivers_and_reads_the_record() -> None:
    rt = Runtime(MemoryStore(), ManualClock(), ALLOW_SAME_HOST)
    cloud = Cloud.build([Host("host-a", 8, 16384, 200)], FLAVORS, store=rt.store)
    vm = cloud.boot("vm1", "m1.tiny", "host-a")
    conductor = Conductor(rt)
    with pytest.raises(NoValidHost):
        conductor.candidates(vm, "m1.tiny")  # a migrate: the capability is not there
    assert conductor.candidates(vm, "m1.small") == ["host-a"]  # a resize needs none
    rt.store.put_host(Host("host-a", 8, 16384, 200, supports_migrate_to_same_host=True))
    assert conductor.candidates(vm, "m1.tiny") == ["host-a"]


def test_a_registered_capability_lets_a_migrate_stay_on_its_host() -> None:
    cloud = Cloud.build(
        [Host("host-a", 8, 16384, 200)],
        FLAVORS,
        config=ALLOW_SAME_HOST,
        hypervisor=FakeHypervisor(capabilities=SAME_HOST),
    )
    assert record(cloud, "host-a").supports_migrate_to_same_host is True  # registered
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().ok
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("resized", None, "host-a")
    assert snap["migrations"] == [("finished", "host-a", "host-a")]


def test_the_record_decides_not_the_driver() -> None:
    # The driver can move to its own host, but the host record says otherwise (the
    # service registered an older driver, say): the conductor goes by the record.
    cloud = Cloud.build(
        [Host("host-a", 8, 16384, 200)],
        FLAVORS,
        config=ALLOW_SAME_HOST,
        hypervisor=FakeHypervisor(capabilities=SAME_HOST),
    )
    put(cloud, "host-a", supports_migrate_to_same_host=False)
    cloud.boot("vm1", "m1.tiny", "host-a")
    result = cloud.migrate("vm1").wait()
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "NoValidHost")
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("active", None, "host-a")
    assert snap["migrations"] == [("error", "host-a", None)]
    # And the other way round: a driver without the capability, a record with it.
    other = make_cloud(1, config=ALLOW_SAME_HOST)
    assert record(other, "host-a").supports_migrate_to_same_host is False
    put(other, "host-a", supports_migrate_to_same_host=True)
    other.boot("vm1", "m1.tiny", "host-a")
    assert other.preflight("vm1").host == "host-a"


def test_a_host_record_put_after_the_cloud_is_registered_when_the_cloud_runs() -> None:
    hypervisor = FakeHypervisor(capabilities=SAME_HOST)
    cloud = Cloud({"host-a": hypervisor.add_host("host-a")}, config=ALLOW_SAME_HOST)
    cloud.store.put_host(Host("host-a", 8, 16384, 200))
    cloud.store.put_flavor(TINY)
    assert record(cloud, "host-a").heartbeat_at is None
    assert cloud.step() is None
    assert record(cloud, "host-a") == Host(
        "host-a", 8, 16384, 200, heartbeat_at=EPOCH, supports_migrate_to_same_host=True
    )


# -- the cloud: liveness is the host records' ---------------------------------------------


def test_a_host_whose_heartbeat_expired_is_not_scheduled_to() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    put(cloud, "host-b", heartbeat_at=ago(cloud, 61))  # its service stopped reporting
    assert cloud.is_up("host-b") is False
    assert cloud.preflight("vm1").error_type == "NoValidHost"
    result = cloud.migrate("vm1").wait()
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "NoValidHost")
    assert snapshot(cloud)["migrations"] == [("error", "host-a", None)]
    put(cloud, "host-b", heartbeat_at=ago(cloud, 60))  # 60 s old: still up
    assert cloud.is_up("host-b") is True
    assert cloud.migrate("vm1").wait().ok
    assert snapshot(cloud)["migrations"] == [
        ("error", "host-a", None),
        ("finished", "host-a", "host-b"),
    ]


def test_messages_for_a_host_whose_heartbeat_expired_wait() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    operation = cloud.migrate("vm1")
    assert cloud.step() is not None  # the conductor: prep_resize to host-b
    (prep,) = cloud.pending()
    assert isinstance(prep, PrepResize) and prep.host == "host-b"
    put(cloud, "host-b", heartbeat_at=ago(cloud, 61))
    assert cloud.step() is None
    assert cloud.pending() == [prep]
    waited = operation.wait()
    assert (waited.outcome, waited.error_type) == (Outcome.PENDING, "OperationPending")
    assert cloud.instance("vm1").task_state is not None
    services.heartbeat(cloud.runtime, "host-b")  # it reports again
    assert cloud.is_up("host-b")
    assert operation.wait().ok
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("resized", None, "host-b")
    assert snap["migrations"] == [("finished", "host-a", "host-b")]


def test_running_services_heartbeat_as_the_clock_moves() -> None:
    cloud = make_cloud()
    assert [h.heartbeat_at for h in cloud.store.list_hosts()] == [EPOCH, EPOCH]
    cloud.advance_clock(3600)
    now = cloud.clock.now()
    assert [h.heartbeat_at for h in cloud.store.list_hosts()] == [now, now]
    assert all(cloud.is_up(h) for h in cloud.hosts)
    assert isinstance(cloud.clock, ManualClock)
    cloud.clock.advance(5)  # less than report_interval: no heartbeat yet
    assert cloud.step() is None
    assert record(cloud, "host-a").heartbeat_at == now
    cloud.clock.advance(5)
    assert cloud.step() is None
    assert record(cloud, "host-a").heartbeat_at == cloud.clock.now()


def test_a_crash_marks_the_host_down_and_a_restart_clears_the_mark() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-b", "finish_migration", mode=FaultMode.CRASH))
    waited = cloud.migrate("vm1").wait()
    assert (waited.outcome, waited.error_type) == (Outcome.PENDING, "OperationPending")
    assert record(cloud, "host-b").up is False
    assert cloud.is_up("host-b") is False
    cloud.advance_clock(120)  # a crashed service sends no heartbeat
    assert record(cloud, "host-b").heartbeat_at == EPOCH
    assert record(cloud, "host-a").heartbeat_at == cloud.clock.now()
    assert [i.name for i in cloud.restart_compute("host-b")] == ["vm1"]
    assert record(cloud, "host-b") == Host(
        "host-b", 8, 16384, 200, up=True, heartbeat_at=cloud.clock.now()
    )
    assert cloud.is_up("host-b") is True
    cloud.run()
    vm = cloud.instance("vm1")
    assert (vm.vm_state, vm.task_state, vm.host) == (VmState.ERROR, None, "host-b")
    assert [(r.action, r.outcome, r.error_type) for r in cloud.store.list_requests(vm.uuid)] == [
        ("migrate", Outcome.FAILED, "MoveInterrupted"),
        ("recover", Outcome.FAILED, "MoveInterrupted"),
    ]
    assert snapshot(cloud)["migrations"] == [("error", "host-a", "host-b")]


def test_a_host_marked_down_by_hand_holds_its_messages_until_restarted() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    operation = cloud.migrate("vm1")
    cloud.step()
    services.mark_down(cloud.runtime, "host-b")
    assert cloud.step() is None
    assert [m.kind for m in cloud.pending()] == ["prep_resize"]
    assert cloud.restart_compute("host-b") == []
    assert operation.wait().ok
    assert snapshot(cloud)["migrations"] == [("finished", "host-a", "host-b")]


# -- the new fields in the stores ----------------------------------------------------------

REPORTED = Host(
    "host-a",
    8,
    16384,
    200,
    up=False,
    heartbeat_at=dt.datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=dt.UTC),
    supports_migrate_to_same_host=True,
)


def test_the_new_fields_round_trip_in_memory() -> None:
    store = MemoryStore()
    store.put_host(REPORTED)
    assert store.get_host("host-a") == REPORTED
    assert store.list_hosts() == [REPORTED]


def test_the_new_fields_round_trip_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "hosts.db"
    store = SqliteStore(path)
    store.put_host(REPORTED)
    assert store.get_host("host-a") == REPORTED
    store.close()
    reopened = SqliteStore(path)  # decoded from the file, not from a cache
    assert reopened.get_host("host-a") == REPORTED
    assert reopened.list_hosts() == [REPORTED]
    reopened.close()


def test_a_host_row_written_before_the_new_fields_reads_with_the_defaults(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    SqliteStore(path).close()
    # The row exactly as the codec wrote a host before heartbeat_at and the capability.
    old = {
        "name": "host-a",
        "vcpus": 8,
        "ram_mb": 16384,
        "disk_gb": 200,
        "up": True,
        "enabled": True,
        "disk_available_least_gb": None,
    }
    store = SqliteStore(path)
    store.put_host(Host("host-a", 8, 16384, 200))
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        changed = db.execute(
            "UPDATE record SET data = ? WHERE kind = ? AND key = ?",
            (json.dumps(old, separators=(",", ":")), HOST, "host-a"),
        ).rowcount
    assert changed == 1
    reopened = SqliteStore(path)
    assert reopened.get_host("host-a") == Host("host-a", 8, 16384, 200)
    assert reopened.get_host("host-a").heartbeat_at is None  # type: ignore[union-attr]
    reopened.close()
    # A cloud on it: the host counts as up and its service registers.
    store = SqliteStore(path)
    hypervisor = FakeHypervisor(["host-a"])
    cloud = Cloud({"host-a": hypervisor.driver("host-a")}, store=store)
    assert cloud.is_up("host-a")
    assert record(cloud, "host-a").heartbeat_at == EPOCH
    store.close()
