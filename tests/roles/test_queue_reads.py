"""The failure and recovery paths read the queue by instance, never the whole queue.

A move of vm1 fails in a hop, is aborted, or is recovered by a restart, while other
instances have messages queued for a host whose service is down (they stay queued). The
store's ``pending_messages`` is wrapped to record each call: what it was asked and what
it returned. Every call names vm1, returns vm1's messages only, and the calls are the
same whether 1 or 40 unrelated messages wait: the cost does not grow with the queue.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

from coldmig_fsm import Cloud, Outcome, TaskState, VmState, messages
from coldmig_fsm.drivers import FakeFault
from tests.conftest import make_cloud

Read = tuple[str | None, tuple[str, ...]]  # (instance asked for, request ids returned)


def crowded(unrelated: int) -> Cloud:
    """vm1 on host-a, host-b free, and ``unrelated`` instances on host-c, each with a
    stop queued for host-c, whose service is down."""
    cloud = make_cloud(3, capacity=(64, 65536, 1000))
    cloud.boot("vm1", "m1.tiny", "host-a")
    for n in range(unrelated):
        cloud.boot(f"other-{n}", "m1.tiny", "host-c")
    host_c = cloud.store.get_host("host-c")
    assert host_c is not None
    cloud.store.put_host(attrs.evolve(host_c, up=False))
    for n in range(unrelated):
        cloud.stop(f"other-{n}")
    assert [m.kind for m in cloud.pending()] == ["stop_instance"] * unrelated
    return cloud


def recorded(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> list[Read]:
    """Record every ``pending_messages`` call of the cloud's store from now on."""
    reads: list[Read] = []
    original = cloud.store.pending_messages

    def counting(instance_uuid: str | None = None) -> list[messages.Message]:
        found = original(instance_uuid)
        reads.append((instance_uuid, tuple(m.request_id for m in found)))
        assert instance_uuid is None or all(m.instance_uuid == instance_uuid for m in found)
        return found

    monkeypatch.setattr(cloud.store, "pending_messages", counting)
    return reads


def failing_hop(cloud: Cloud) -> None:
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "migrate_disk_and_power_off"))
    moving = cloud.migrate("vm1", "host-b")
    cloud.run()
    assert moving.result is not None and moving.result.outcome is Outcome.FAILED
    assert cloud.instance("vm1").vm_state is VmState.ERROR


def aborted(cloud: Cloud) -> None:
    cloud.lose_next("finish_resize")
    cloud.migrate("vm1", "host-b")
    cloud.run()
    abort = cloud.abort_migration("vm1")
    cloud.run()
    assert abort.result is not None and abort.result.outcome is Outcome.SUCCEEDED


def restarted(cloud: Cloud) -> None:
    cloud.lose_next("finish_resize")
    moving = cloud.migrate("vm1", "host-b")
    cloud.run()
    assert cloud.instance("vm1").task_state is TaskState.RESIZE_MIGRATED
    assert [i.name for i in cloud.restart_compute("host-a")] == ["vm1"]
    # The restart delivered the rollback's two hops (host-b, then host-a) itself.
    vm = cloud.instance("vm1")
    assert (vm.vm_state, vm.task_state, vm.host) == (VmState.ACTIVE, None, "host-a")
    assert moving.result is not None and moving.result.outcome is Outcome.ROLLED_BACK


PATHS: dict[str, Callable[[Cloud], None]] = {
    "failing-hop": failing_hop,  # fail_step: the requests with no message on their way
    "abort": aborted,  # the abort's end: recoveries it interrupted
    "restart": restarted,  # init_host, and the Cloud delivering what it sent
}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_path_reads_only_its_instances_messages(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[Read]] = []
    for unrelated in (1, 40):
        cloud = crowded(unrelated)
        recording = recorded(cloud, monkeypatch)
        PATHS[path](cloud)
        reads = list(recording)  # (the checks below read the whole queue themselves)
        vm1 = cloud.instance("vm1").uuid
        assert reads, "the path looks at the messages on their way"
        assert {asked for asked, _ in reads} == {vm1}, "by instance, never the whole queue"
        assert len(cloud.pending()) == unrelated  # the others' messages still wait
        seen.append([(None if asked == vm1 else asked, found) for asked, found in reads])
    few, many = seen
    assert [len(found) for _, found in few] == [len(found) for _, found in many], (
        "what the store returns does not grow with the unrelated messages"
    )
