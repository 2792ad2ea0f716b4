"""The model checker's engine (issue 14): snapshots instead of copies, fingerprints,
symmetry reduction, workers, liveness; and that it explores what the reference engine
(the deep-copy checker it replaced, kept as the benchmark's baseline) explores."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
import signal
from typing import Any

import attrs
import pytest

from coldmig_fsm import Cloud, messages
from coldmig_fsm.roles import services
from coldmig_fsm.stores.memory import MemoryStore
from coldmig_fsm.verification import _search as search_module
from coldmig_fsm.verification.explorer import Abstraction, Action, abstract, apply
from coldmig_fsm.verification.model_check import (
    Bounds,
    CheckResult,
    SearchProgress,
    initial_cloud,
    model_check,
)
from coldmig_fsm.verification.symmetry import Symmetry, canonical
from tests.test_mutants import MUTANTS

TRACE = (
    Action("migrate", "vm1"),
    Action("step"),
    Action("step"),
    Action("start", "vm2"),
    Action("step"),
    Action("step"),
)


def _figures(result: CheckResult) -> tuple[int, int, int, bool, bool]:
    return (result.states, result.transitions, result.depth, result.complete, result.ok)


# --- snapshots ------------------------------------------------------------------------


def test_a_restored_cloud_continues_as_the_original() -> None:
    cloud = initial_cloud(2, 3)
    for action in TRACE[:3]:
        apply(cloud, action)
    saved = cloud.snapshot()
    picture = abstract(cloud)
    twin = initial_cloud(2, 3)
    twin.restore(saved)
    assert abstract(twin) == picture
    for action in TRACE[3:]:
        apply(cloud, action)
        apply(twin, action)
    assert abstract(twin) == abstract(cloud)
    # The snapshot did not follow either cloud: restored again, it is the moment it was.
    cloud.restore(saved)
    assert abstract(cloud) == picture
    assert cloud.hypervisor is not None and twin.hypervisor is not None
    assert len(cloud.hypervisor.calls) < len(twin.hypervisor.calls)


def test_a_store_snapshot_shares_records_and_copies_containers() -> None:
    cloud = initial_cloud(1, 2)
    store = cloud.store
    assert isinstance(store, MemoryStore)
    saved = store.snapshot()
    before = store.list_instances()
    apply(cloud, Action("migrate", "vm1"))
    cloud.run()
    assert store.list_instances() != before
    store.restore(saved)
    assert store.list_instances() == before
    assert store.list_instances()[0] is before[0]  # the record itself is shared
    assert store.pending_messages() == []


def test_a_snapshot_is_refused_inside_an_atomic_block() -> None:
    store = MemoryStore()
    with store.atomic(), pytest.raises(RuntimeError, match="outside atomic blocks"):
        store.snapshot()


def test_a_cloud_snapshot_needs_a_memory_store_and_a_manual_clock() -> None:
    cloud = Cloud({}, store=MemoryStore())
    cloud.snapshot()  # no drivers at all: fine
    cloud.clock = object()  # type: ignore[assignment]
    with pytest.raises(TypeError, match="MemoryStore and a ManualClock"):
        cloud.snapshot()


def test_the_abstractions_reads_agree_with_the_cloud() -> None:
    # What the abstraction reads once per state: every host with is_up of it (one
    # report for all), the guests on each host with the guests themselves.
    cloud = initial_cloud(2, 3)
    apply(cloud, Action("migrate", "vm1", "host-c"))
    apply(cloud, Action("step"))
    apply(cloud, Action("restart_compute", arg="host-b"))
    apply(cloud, Action("advance_clock", arg="90"))
    services.mark_down(cloud.runtime, "host-a")
    assert cloud.hypervisor is not None
    hv = cloud.hypervisor
    listed = [(h, cloud.is_up(h.name)) for h in cloud.store.list_hosts()]
    assert cloud.hosts_up() == listed
    assert [up for _, up in listed] == [False, True, True]
    assert {
        host: [g.uuid for g in guests] for host, guests in hv.guests_by_host().items()
    } == hv.domains()
    assert all(
        hv.guest(host, g.uuid) is g for host, guests in hv.guests_by_host().items() for g in guests
    )


# --- the same exploration as the reference engine --------------------------------------


@pytest.mark.parametrize(
    ("instances", "hosts", "faults"), [(1, 2, True), (2, 3, False), (2, 2, True)]
)
def test_without_symmetry_the_engine_explores_what_the_reference_explores(
    instances: int, hosts: int, faults: bool
) -> None:
    def factory() -> Cloud:
        return initial_cloud(instances, hosts)

    reference = model_check(factory, faults=faults, engine="reference")
    snapshot = model_check(factory, faults=faults, symmetry=False, liveness=False)
    assert _figures(snapshot) == _figures(reference)
    assert (snapshot.engine, reference.engine) == ("snapshot", "reference")


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_engines_find_the_same_counterexample(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = MUTANTS[name].inject(monkeypatch)
    reference = model_check(factory, engine="reference")
    snapshot = model_check(factory, symmetry=False)
    assert snapshot.counterexample == reference.counterexample
    assert snapshot.violations == reference.violations
    assert _figures(snapshot) == _figures(reference)
    assert snapshot.failed == "invariant"


def test_max_states_stops_where_the_reference_stops() -> None:
    bounds = Bounds(max_states=300)
    reference = model_check(lambda: initial_cloud(2, 3), bounds, engine="reference")
    snapshot = model_check(lambda: initial_cloud(2, 3), bounds, symmetry=False)
    assert _figures(snapshot) == _figures(reference)
    assert not snapshot.complete and not snapshot.liveness_checked


def test_fingerprints_are_small_and_their_collision_bound_reported() -> None:
    result = model_check(lambda: initial_cloud(2, 3), faults=False)
    assert result.fingerprint_bits == 64
    n = result.states
    assert result.collision_probability == pytest.approx(n * (n - 1) / 2 / 2**64)
    assert 0 < result.bytes_per_state <= 200


def test_unknown_engine_and_bad_workers_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        model_check(engine="fast")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        model_check(workers=0)
    with pytest.raises(ValueError, match="one process"):
        model_check(engine="reference", workers=2)


# --- symmetry reduction ----------------------------------------------------------------


def test_interchangeable_hosts_and_instances() -> None:
    group = Symmetry.of(initial_cloud(3, 3))
    assert group.hosts == (("host-a", "host-b", "host-c"),)
    # vm1 and vm3 are both active (on different hosts); vm2 is stopped.
    assert group.instances == (("vm1", "vm3"), ("vm2",))
    assert group.order == 6 * 2


def test_a_renamed_state_has_the_same_canonical_encoding() -> None:
    names = ("vm1", "vm2", "vm3")
    group = Symmetry.of(initial_cloud(3, 3))
    one = initial_cloud(3, 3)
    other = initial_cloud(3, 3)
    # vm1 (host-a) moves to host-b; in the other cloud vm3 (host-c) moves to host-b:
    # the same state once host-a/host-c and vm1/vm3 are swapped.
    for cloud, name in ((one, "vm1"), (other, "vm3")):
        apply(cloud, Action("migrate", name, "host-b"))
        for _ in range(3):
            apply(cloud, Action("step"))
    ops_one, ops_other = (1, 2, 2), (2, 2, 1)
    key_one = canonical(abstract(one), ops_one, names, group)  # type: ignore[arg-type]
    key_other = canonical(abstract(other), ops_other, names, group)  # type: ignore[arg-type]
    assert key_one == key_other
    assert abstract(one) != abstract(other)
    plain_one = canonical(abstract(one), ops_one, names, None)  # type: ignore[arg-type]
    assert plain_one != canonical(abstract(other), ops_other, names, None)  # type: ignore[arg-type]


def _rename(value: Any, mapping: dict[str, str]) -> Any:
    """A plain renaming of a picture: whole strings and ``compute:<host>``."""
    if isinstance(value, str):
        if value.startswith("compute:"):
            return "compute:" + mapping.get(value[8:], value[8:])
        return mapping.get(value, value)
    if isinstance(value, tuple):
        return tuple(_rename(v, mapping) for v in value)
    return value


@pytest.mark.parametrize("instances", [2, 1])  # 1: two hosts often named nowhere
def test_canonical_is_invariant_under_every_renaming(
    instances: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pictures: list[tuple[Any, tuple[int, ...]]] = []
    key = search_module._Partition.key

    def recording(
        self: Any, total: int, ops: tuple[int, ...], faults: int, lost: bool, read: Any = None
    ) -> tuple[int, tuple[int, ...]]:
        pictures.append((abstract(self.cloud), ops))
        return key(self, total, ops, faults, lost, read)

    monkeypatch.setattr(search_module._Partition, "key", recording)
    model_check(lambda: initial_cloud(instances, 3), faults=True, symmetry=False, liveness=False)
    group = Symmetry.of(initial_cloud(instances, 3))
    names = ("vm1", "vm2")[:instances]
    hosts = ("host-a", "host-b", "host-c")
    classes: dict[bytes, set[bytes]] = {}
    for picture, ops in pictures[::7]:
        expected = canonical(picture, ops, names, group)
        for image in itertools.permutations(hosts):
            renamed = _rename(picture, dict(zip(hosts, image, strict=True)))
            assert canonical(renamed, ops, names, group) == expected, (picture, image)
        classes.setdefault(expected[0], set()).add(canonical(picture, ops, names, None)[0])
    assert len(classes) < len(pictures[::7])  # and it does merge renamed states


@pytest.mark.parametrize(("instances", "faults"), [(2, False), (3, True)])
def test_the_abstraction_hands_canonical_what_it_would_read(
    instances: int, faults: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model checker's key: Abstraction.picture_and_names (one Abstraction for the
    # whole search), then canonical told what the host places hold. On every state:
    # the picture is the one a fresh Abstraction (abstract) makes, and the encoding and
    # budgets are those canonical finds from the picture alone (3 instances: vm1 and
    # vm3 are interchangeable, so permutations are tried too).
    seen = [0]

    def checked(
        picture: tuple[Any, ...],
        ops: tuple[int, ...],
        names: tuple[str, ...],
        group: Symmetry | None,
        *,
        named: list[Any],
    ) -> tuple[bytes, tuple[int, ...]]:
        found = canonical(picture, ops, names, group, named=named)
        assert found == canonical(picture, ops, names, group)
        seen[0] += 1
        return found

    picture_and_names = Abstraction.picture_and_names

    def compared(self: Abstraction, cloud: Cloud) -> tuple[tuple[Any, ...], list[Any]]:
        found = picture_and_names(self, cloud)
        assert found == picture_and_names(Abstraction(), cloud)
        return found

    monkeypatch.setattr(search_module, "canonical", checked)
    monkeypatch.setattr(Abstraction, "picture_and_names", compared)
    result = model_check(
        lambda: initial_cloud(instances, 3), Bounds(operations=1), faults=faults, liveness=False
    )
    assert result.ok and result.complete
    assert seen[0] == result.transitions + 1  # every child, and the start


def _with_reason(picture: tuple[Any, ...], reason: str) -> tuple[Any, ...]:
    """``picture`` with a start-up recovery's rollback queued, whose reason names hosts."""
    rollback = ("roll_back_move", "compute:host-a", 0, "vm1", None, reason, True, ())
    return (*picture[:3], (*picture[3], rollback), *picture[4:])


def test_names_in_text_are_renamed_word_by_word() -> None:
    # A restart's reason names a host that may occur nowhere else: it counts for the
    # host order, and is renamed with the rest (whole words only: host-ab is no host).
    group = Symmetry.of(initial_cloud(2, 3))
    start = abstract(initial_cloud(2, 3))
    names = ("vm1", "vm2")
    hosts = ("host-a", "host-b", "host-c")
    reason = "the compute service of {} restarted while instance vm1 was in task_state x"
    picture = _with_reason(start, reason.format("host-c"))  # type: ignore[arg-type]
    expected = canonical(picture, (1, 1), names, group)
    for image in itertools.permutations(hosts):
        mapping = dict(zip(hosts, image, strict=True))
        renamed = _rename(picture, mapping)  # whole strings and compute:<host>
        *queue, rollback = renamed[3]
        rollback = (*rollback[:5], reason.format(mapping["host-c"]), *rollback[6:])
        renamed = (*renamed[:3], (*queue, rollback), *renamed[4:])
        assert canonical(renamed, (1, 1), names, group) == expected, image
    other = _with_reason(start, reason.format("host-b"))  # type: ignore[arg-type]
    assert canonical(other, (1, 1), names, group) != expected
    unnamed = _with_reason(start, reason.format("host-ab"))  # type: ignore[arg-type]
    assert canonical(unnamed, (1, 1), names, group) != expected


def test_a_reason_naming_an_instance_by_uuid_is_pictured_by_name() -> None:
    # Two clouds whose only difference is which of two interchangeable instances a
    # queued rollback is about: the same state up to renaming vm1 and vm3 (and their
    # hosts). The reason names the instance with its uuid; a picture that kept the uuid
    # would tell the two apart.
    group = Symmetry.of(initial_cloud(3, 3))
    names = ("vm1", "vm2", "vm3")
    keys = []
    for name in ("vm1", "vm3"):
        cloud = initial_cloud(3, 3)
        instance = cloud.instance(name)
        reason = f"{instance.host} restarted while instance {instance.describe()} was busy"
        cloud.store.push_message(
            messages.RollBackMove("req-1", instance.uuid, instance.host, None, reason=reason)
        )
        picture = abstract(cloud)
        (element,) = picture[3]  # type: ignore[index]
        assert element[5] == reason.replace(instance.uuid, name)
        keys.append(canonical(picture, (2, 2, 2), names, group))  # type: ignore[arg-type]
    assert keys[0] == keys[1]


def test_symmetry_explores_fewer_states_with_the_same_verdict() -> None:
    full = model_check(lambda: initial_cloud(3, 3), Bounds(operations=1), symmetry=False)
    reduced = model_check(lambda: initial_cloud(3, 3), Bounds(operations=1))
    assert full.ok and reduced.ok and full.complete and reduced.complete
    assert reduced.states < full.states
    assert reduced.depth == full.depth
    assert reduced.symmetry and not full.symmetry


def _kind(violation: str) -> str:
    """A violation with its names blanked (a renamed trace names other hosts/instances)."""
    violation = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<uuid>", violation)
    violation = re.sub(r"host-[a-z]", "<host>", violation)
    return re.sub(r"\bvm\d+\b", "<vm>", violation)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_reduced_and_unreduced_searches_find_the_same_violations(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = MUTANTS[name].inject(monkeypatch)
    full = model_check(factory, symmetry=False)
    reduced = model_check(factory, symmetry=True)
    assert full.counterexample is not None and reduced.counterexample is not None
    assert len(reduced.counterexample) == len(full.counterexample)
    assert sorted(map(_kind, reduced.violations)) == sorted(map(_kind, full.violations))


# --- workers ---------------------------------------------------------------------------


def test_two_workers_find_what_one_finds() -> None:
    one = model_check(lambda: initial_cloud(2, 3), faults=True)
    two = model_check(lambda: initial_cloud(2, 3), faults=True, workers=2)
    assert _figures(two) == _figures(one)
    assert two.workers == 2 and two.liveness_checked
    assert two.by_action == one.by_action


@pytest.mark.parametrize(
    ("sizes", "plan"),
    [
        ([10, 0], [[(1, 5)], []]),
        ([0, 9], [[], [(0, 5)]]),  # 5 and 4: the first worker holds the odd one
        ([5, 5], [[], []]),
        ([7, 0, 2], [[(1, 3), (2, 1)], [], []]),
        ([0, 0, 12, 0], [[], [], [(0, 3), (1, 3), (3, 3)], []]),
    ],
)
def test_frontiers_are_evened_out_by_moving_only_the_surplus(
    sizes: list[int], plan: list[list[tuple[int, int]]]
) -> None:
    assert search_module._transfers(sizes) == plan
    after = list(sizes)
    for donor, shares in enumerate(plan):
        for receiver, count in shares:
            after[donor] -= count
            after[receiver] += count
    assert sum(after) == sum(sizes) and max(after) - min(after) <= 1


def test_two_workers_share_the_expansions_of_every_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    # The root is one worker's, and the worker that makes a child expands it: without
    # the balancing the other worker would never expand a state.
    expanded = multiprocessing.get_context("fork").Array("i", 2)  # shared with the forks
    layer = search_module._Partition.expand_layer

    def counted(self: Any, *args: Any) -> Any:
        out = layer(self, *args)
        with expanded.get_lock():
            expanded[self.index] += len(self.node_counts)
        return out

    monkeypatch.setattr(search_module._Partition, "expand_layer", counted)
    result = model_check(lambda: initial_cloud(1, 2), faults=True, workers=2)
    assert result.states == 439
    counts: list[int] = expanded[:]
    assert sum(counts) == result.states  # each state once, by one worker
    # Every layer starts with frontiers within one node of each other.
    assert abs(counts[0] - counts[1]) <= result.depth + 1


# --- Ctrl-C ----------------------------------------------------------------------------


def _interrupting_write(monkeypatch: pytest.MonkeyPatch, at: int) -> list[int]:
    """Make the ``at``-th row the memory store writes send this process a SIGINT from
    inside the write (before the row is set: its journal entry is already made); the
    list returned gets ``at`` once that write has ended."""
    calls = [0]
    ended: list[int] = []
    write = MemoryStore._set_row

    def interrupted(self: MemoryStore, *args: Any) -> None:
        calls[0] += 1
        if calls[0] != at:
            write(self, *args)
            return
        os.kill(os.getpid(), signal.SIGINT)
        write(self, *args)
        ended.append(at)

    monkeypatch.setattr(MemoryStore, "_set_row", interrupted)
    return ended


def test_a_ctrl_c_inside_an_action_stops_the_search_once_the_action_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Raised where it arrived, the interrupt broke the write half-way; undoing it failed
    # (KeyError) and the search reported `stop vm1` raising it as a violation.
    ended = _interrupting_write(monkeypatch, at=500)
    with pytest.raises(KeyboardInterrupt):
        model_check(lambda: initial_cloud(2, 3), faults=True)
    assert ended == [500]  # the write the signal arrived in was not cut short
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_programs_own_sigint_handler_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    heard: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: heard.append(signum))
    try:
        _interrupting_write(monkeypatch, at=500)
        result = model_check(lambda: initial_cloud(1, 2), faults=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert heard == [signal.SIGINT]
    assert result.ok and result.complete and result.states == 439


# --- a compact frontier ----------------------------------------------------------------


def _nodes(count: int) -> list[Any]:
    cloud = initial_cloud(1, 2)
    return [
        search_module._Node(cloud.snapshot(), (i,), (), 2, (2,), 1, False, i) for i in range(count)
    ]


@pytest.mark.parametrize("compact_after", [0, 3, 9])
def test_a_compacted_frontier_gives_its_nodes_back_in_order(
    compact_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "_CHUNK", 4)
    frontier = search_module._Frontier(compact_after)
    for node in _nodes(13):
        frontier.append(node)
    # Past the limit, packed 4 at a time from the oldest (with 9: the first ten at once
    # as two chunks and a tail of two): nodes 0-3, 4-7 and 8-11; the 13th waits.
    assert (len(frontier), frontier.compressed, len(frontier._chunks)) == (13, 12, 3)
    drained = frontier.drain()
    first = next(drained)
    assert len(frontier) == 0  # emptied at once: the nodes are the drain's now
    nodes = [first, *drained]
    assert [n.path for n in nodes] == [(i,) for i in range(13)]
    assert [n.fp for n in nodes] == list(range(13))
    # A node unpacked restores the state it was packed with.
    cloud = initial_cloud(1, 2)
    cloud.restore(nodes[5].snapshot)
    assert abstract(cloud) == abstract(initial_cloud(1, 2))


def test_a_frontier_that_never_compacts_keeps_every_node_as_it_is() -> None:
    made = _nodes(5)
    frontier = search_module._Frontier(None)
    for node in made:
        frontier.append(node)
    assert (len(frontier), frontier.compressed) == (5, 0)
    assert all(a is b for a, b in zip(frontier.drain(), made, strict=True))


@pytest.mark.parametrize("name", [None, "rollback_forgets_dest_claim"])
def test_compacting_every_layer_changes_no_result(
    name: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = (lambda: initial_cloud(2, 3)) if name is None else MUTANTS[name].inject(monkeypatch)
    kept = model_check(factory, faults=True)
    monkeypatch.setattr(search_module, "_COMPACT_AFTER", 0)
    monkeypatch.setattr(search_module, "_CHUNK", 50)
    compacted = model_check(factory, faults=True)
    shared = model_check(factory, faults=True, workers=2)  # the forks compact as well
    for result in (compacted, shared):
        assert _figures(result) == _figures(kept)
        assert result.counterexample == kept.counterexample
        assert result.violations == kept.violations
        assert result.by_action == kept.by_action
    assert (compacted.ok, compacted.counterexample is None) == (name is None, name is None)


# --- by action -------------------------------------------------------------------------


def test_the_tally_by_action_adds_up_to_the_search() -> None:
    result = model_check(lambda: initial_cloud(1, 2), faults=True)
    tally = {t.kind: (t.transitions, t.states) for t in result.by_action}
    assert sum(t for t, _ in tally.values()) == result.transitions == 1001
    assert sum(s for _, s in tally.values()) == result.states - 1 == 438
    assert [t.kind for t in result.by_action] == sorted(tally)
    assert tally["step"] == (211, 133)
    assert tally["step: lost"] == (95, 82)
    assert tally["reconcile"] == (205, 18)
    # A race's winner is also tried alone, with the same budget: it reaches nothing new.
    assert tally["race"] == (52, 0)
    # Every fault kind is tried on every driver call a step makes; a hung call fails
    # with DriverTimeout, a HypervisorError that no role handles apart: hang reaches
    # exactly the states raise reaches.
    assert {mode: tally[f"step: {mode}"] for mode in ("raise", "rollback", "hang", "crash")} == {
        "raise": (48, 32),
        "rollback": (48, 6),
        "hang": (48, 0),
        "crash": (48, 46),
    }


def test_the_tally_is_left_empty_when_the_search_did_not_finish() -> None:
    assert model_check(lambda: initial_cloud(1, 2), Bounds(max_states=10)).by_action == ()
    assert CheckResult(1, 0, 0.0, 0, True).by_action == ()


@pytest.mark.parametrize("name", ["api_task_guard_widened", "rollback_forgets_dest_claim"])
def test_two_workers_find_a_shortest_counterexample_of_the_same_length(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = MUTANTS[name].inject(monkeypatch)
    one = model_check(factory)
    two = model_check(factory, workers=2)
    assert one.counterexample is not None and two.counterexample is not None
    assert len(two.counterexample) == len(one.counterexample)
    assert two.counterexample == one.counterexample  # the same order, so the same one
    assert _figures(two) == _figures(one)


def test_two_workers_stop_at_max_states_where_one_stops() -> None:
    bounds = Bounds(max_states=777)
    one = model_check(lambda: initial_cloud(2, 3), bounds)
    two = model_check(lambda: initial_cloud(2, 3), bounds, workers=2)
    assert _figures(two) == _figures(one) == (777, one.transitions, one.depth, False, True)


def test_progress_reports_frontier_and_speed() -> None:
    seen: list[SearchProgress] = []
    result = model_check(lambda: initial_cloud(1, 2), monitor=seen.append)
    assert len(seen) == result.depth
    assert [p.depth for p in seen] == list(range(1, result.depth + 1))
    assert all(p.frontier > 0 and p.states_per_second > 0 for p in seen)


# --- liveness --------------------------------------------------------------------------


def test_every_state_can_settle() -> None:
    result = model_check(lambda: initial_cloud(2, 3), faults=True)
    assert result.ok and result.liveness_checked and result.failed is None


def restart_leaves_the_host_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant: a restarted compute service never clears its down mark, so what a
    crash left on that host can never settle. No invariant sees it: a request is only
    required to have settled while the cloud is idle, and a host that is down is not."""
    monkeypatch.setattr(services, "mark_up", lambda runtime, host: None)


def test_a_request_that_cannot_settle_is_reported_with_its_shortest_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    restart_leaves_the_host_down(monkeypatch)
    bounds = Bounds(operations=1)
    result = model_check(lambda: initial_cloud(1, 2), bounds)
    assert result.failed == "liveness", result.describe()
    assert result.complete and result.liveness_checked
    assert result.counterexample is not None
    # The shortest way there: a request, then a step whose driver call crashes its host.
    assert len(result.counterexample) == 2, result.describe()
    assert "crash" in str(result.counterexample[-1])
    assert "pending" in result.violations[0]
    two = model_check(lambda: initial_cloud(1, 2), bounds, workers=2)
    assert two.counterexample == result.counterexample
    assert two.failed == "liveness"
    # Not checked when asked not to: then the mutant survives.
    without = model_check(lambda: initial_cloud(1, 2), bounds, liveness=False)
    assert without.ok and not without.liveness_checked


def test_check_result_defaults_describe_the_reference() -> None:
    result = CheckResult(1, 0, 0.0, 0, True)
    assert (result.engine, result.fingerprint_bits, result.collision_probability) == (
        "reference",
        0,
        0.0,
    )
    assert attrs.evolve(result, fingerprint_bits=64).collision_probability == 0.0
