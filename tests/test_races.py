"""Two requests on one instance: exactly one wins, the other gets the documented error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coldmig_fsm import (
    Caller,
    Cloud,
    Host,
    Instance,
    InstanceInvalidState,
    MigrationNotFoundByStatus,
    Operation,
    Outcome,
    SqliteStore,
    UnexpectedTaskStateError,
)
from tests.conftest import FLAVORS, make_cloud, snapshot

ADMIN = Caller.admin()

BARRIER_TIMEOUT = 30.0


def race(worker: Callable[[int, threading.Barrier], str], count: int) -> list[str]:
    """Run ``worker(n, barrier)`` in ``count`` threads that meet at ``barrier``.

    Returns the workers' results. A worker that raises breaks the barrier for the others
    and its error is raised here; a barrier nobody reaches times out
    (``BARRIER_TIMEOUT``): the test fails instead of hanging the run.
    """
    barrier = threading.Barrier(count, timeout=BARRIER_TIMEOUT)
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        try:
            result = worker(n, barrier)
        except BaseException as error:
            barrier.abort()
            with lock:
                errors.append(error)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BARRIER_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "racing threads still running"
    # The first real error, not the broken barrier it left the others at.
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return results


def test_a_racing_thread_that_fails_fails_the_test_at_once() -> None:
    def worker(n: int, barrier: threading.Barrier) -> str:
        if n == 0:
            raise ValueError("worker 0 failed before the barrier")
        barrier.wait()
        return "won"

    started = time.monotonic()
    with pytest.raises(ValueError, match="worker 0 failed before the barrier"):
        race(worker, 4)
    # The others were released by the broken barrier, not by its timeout.
    assert time.monotonic() - started < BARRIER_TIMEOUT


def test_two_migrates_prepared_on_the_same_read(cloud: Cloud) -> None:
    uuid = cloud.instance("vm1").uuid
    first = cloud.api.prepare_migrate(uuid, ADMIN)
    second = cloud.api.prepare_resize(uuid, "m1.small", ADMIN)
    cloud.api.submit(first)
    with pytest.raises(UnexpectedTaskStateError, match="expecting \\[None\\]"):
        cloud.api.submit(second)
    assert [a.action for a in cloud.actions("vm1")] == ["migrate"]
    assert len(cloud.pending()) == 1
    cloud.run()
    assert snapshot(cloud)["flavor"] == "m1.tiny"
    assert snapshot(cloud)["migrations"] == [("finished", "host-a", "host-b")]


def test_second_request_after_the_first_is_refused_by_state(cloud: Cloud) -> None:
    cloud.migrate("vm1")
    with pytest.raises(InstanceInvalidState, match="task_state resize_prep"):
        cloud.resize("vm1", "m1.small")


def test_confirm_versus_revert_on_the_same_read(cloud: Cloud) -> None:
    cloud.migrate("vm1").wait()
    uuid = cloud.instance("vm1").uuid
    confirm = cloud.api.prepare_confirm_resize(uuid, ADMIN)
    revert = cloud.api.prepare_revert_resize(uuid, ADMIN)
    cloud.api.submit(revert)
    with pytest.raises(UnexpectedTaskStateError):
        cloud.api.submit(confirm)
    cloud.run()
    assert snapshot(cloud)["migrations"] == [("reverted", "host-a", "host-b")]
    assert snapshot(cloud)["host"] == "host-a"


def test_revert_loses_to_a_confirm_that_took_the_migration(cloud: Cloud) -> None:
    cloud.migrate("vm1").wait()
    uuid = cloud.instance("vm1").uuid
    revert = cloud.api.prepare_revert_resize(uuid, ADMIN)
    cloud.confirm_resize("vm1")  # migration now `confirming`, task_state still null
    with pytest.raises(MigrationNotFoundByStatus):
        cloud.api.submit(revert)
    assert snapshot(cloud)["task_state"] is None
    cloud.run()
    assert snapshot(cloud)["migrations"] == [("confirmed", "host-a", "host-b")]


def test_double_confirm(cloud: Cloud) -> None:
    cloud.migrate("vm1").wait()
    first = cloud.confirm_resize("vm1")
    with pytest.raises(MigrationNotFoundByStatus):
        cloud.confirm_resize("vm1")
    assert first.wait().outcome is Outcome.SUCCEEDED
    with pytest.raises(InstanceInvalidState):
        cloud.confirm_resize("vm1")


def test_delete_during_a_move_wins_and_nothing_leaks(cloud: Cloud) -> None:
    move = cloud.migrate("vm1")
    cloud.step()  # conductor
    cloud.step()  # prep_resize: both hosts hold claims
    delete = cloud.delete("vm1")
    cloud.run()
    assert delete.wait().ok
    result = move.wait()
    assert (result.outcome, result.error_type) == (Outcome.FAILED, "UnexpectedTaskStateError")
    assert snapshot(cloud)["vm_state"] == "deleted"
    assert snapshot(cloud)["usage"] == {"host-a": (0, 0, 0), "host-b": (0, 0, 0)}
    assert snapshot(cloud)["domains"] == {"host-a": [], "host-b": []}
    assert snapshot(cloud)["migrations"] == [("error", "host-a", "host-b")]


def test_a_stop_whose_save_loses_to_a_delete_fails_at_once(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second orchestrator's delete lands between the stop hop's read and its save (the
    # driver's power_off is where the hop waits): the hop's compare-and-swap loses, and
    # the stop's request fails there and then, not later on behalf of the delete.
    driver = cloud.driver("host-a")
    power_off = driver.power_off
    deletes: list[Operation] = []

    def power_off_while_deleted(instance: Instance, *args: float) -> None:
        if not deletes:
            deletes.append(cloud.delete("vm1"))
        power_off(instance, *args)

    monkeypatch.setattr(driver, "power_off", power_off_while_deleted)
    stop = cloud.stop("vm1")
    cloud.step()  # the stop hop on host-a; the delete is submitted during its driver call
    assert stop.result is not None
    assert (stop.result.outcome, stop.result.error_type) == (
        Outcome.FAILED,
        "UnexpectedTaskStateError",
    )
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["task_state"]) == ("active", "deleting")
    cloud.run()
    assert deletes[0].wait().ok
    assert snapshot(cloud)["vm_state"] == "deleted"
    assert snapshot(cloud)["usage"] == {"host-a": (0, 0, 0), "host-b": (0, 0, 0)}
    assert snapshot(cloud)["domains"] == {"host-a": [], "host-b": []}


def test_threads_racing_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "race.sqlite"
    setup = Cloud.build(
        [Host("host-a", 8, 16384, 200), Host("host-b", 8, 16384, 200)],
        FLAVORS,
        store=SqliteStore(path),
    )
    setup.boot("vm1", "m1.tiny", "host-a")
    uuid = setup.instance("vm1").uuid
    setup.store.close()

    def worker(n: int, barrier: threading.Barrier) -> str:
        cloud = Cloud.build([], store=SqliteStore(path), hypervisor=None)
        try:
            prepared = (
                cloud.api.prepare_migrate(uuid, ADMIN)
                if n % 2
                else cloud.api.prepare_resize(uuid, "m1.small", ADMIN)
            )
            barrier.wait()
            cloud.api.submit(prepared)
            return "won"
        except UnexpectedTaskStateError:
            return "lost"
        finally:
            cloud.store.close()

    assert sorted(race(worker, 8)) == ["lost"] * 7 + ["won"]
    check = SqliteStore(path)
    assert check.get_instance(uuid).task_state is not None
    assert len(check.list_actions(uuid)) == 1
    assert len(check.pending_messages()) == 1
    check.close()


def test_owner_and_admin_race_to_lock_and_migrate() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    uuid = cloud.instance("vm1").uuid
    resize = cloud.api.prepare_resize(uuid, "m1.small", Caller.owner("demo"))
    cloud.lock("vm1")
    # The lock does not change task_state, so the prepared resize still goes through:
    # as in Nova, the lock is checked when the request is made, not when it is saved.
    cloud.api.submit(resize)
    assert cloud.run() == 4
    assert snapshot(cloud)["vm_state"] == "resized"


def test_an_abort_saved_while_finish_resize_begins_wins(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second orchestrator's abort lands after finish_resize has read the migration and
    # before its first save (here: while the hop reads the instance). An abort changes
    # the migration only, not the instance's task_state, so the save's compare-and-swap
    # on the migration's status, which the finish_resize rule keeps at post-migrating, is
    # what makes the hop lose: it leaves the move to the abort, which undoes it.
    move = cloud.migrate("vm1")
    for _ in range(3):
        cloud.step()  # the conductor, prep_resize, resize_instance: finish_resize queued
    store = cloud.store
    get_instance = store.get_instance
    aborts: list[Operation] = []
    reads: list[str] = []

    def read_while_aborted(uuid: str) -> Instance:
        reads.append(uuid)
        if len(reads) == 1:  # run_hop's read, between the migration's and the save
            aborts.append(cloud.abort_migration("vm1"))
        return get_instance(uuid)

    monkeypatch.setattr(store, "get_instance", read_while_aborted)
    cloud.step()  # finish_resize: loses at its first save
    monkeypatch.undo()
    assert len(aborts) == 1
    assert snapshot(cloud)["task_state"] == "resize_migrated"
    assert cloud.migrations("vm1")[0].status.value == "cancelling"
    cloud.run()
    assert aborts[0].wait().ok
    assert move.result is not None
    assert (move.result.outcome, move.result.error_type) == (
        Outcome.ROLLED_BACK,
        "MigrationCancelled",
    )
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("active", None, "host-a")
    assert snap["migrations"] == [("cancelled", "host-a", "host-b")]
    assert snap["domains"] == {"host-a": ["vm1"], "host-b": []}
    assert snap["usage"] == {"host-a": (1, 512, 1), "host-b": (0, 0, 0)}
