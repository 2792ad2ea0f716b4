"""The model checker's engine: snapshots, fingerprints, partitions, liveness.

:func:`~coldmig_fsm.verification.model_check.model_check` runs :func:`search`. How it
works, and what it promises:

* **States are snapshots.** One working :class:`~coldmig_fsm.Cloud` is restored from the
  parent's :class:`~coldmig_fsm.runners.cloud.CloudSnapshot` before each action and the
  child's snapshot is taken only when the child is a new state. Records are immutable
  values shared by every snapshot, and so are the store's tables, logs and queues until
  the store writes one (:meth:`~coldmig_fsm.stores.memory.MemoryStore.snapshot`).
* **The visited set holds fingerprints.** A state's key is the 64-bit blake2b digest of
  the canonical encoding of its abstract picture
  (:func:`~coldmig_fsm.verification.symmetry.canonical`, which renames interchangeable
  hosts and instances when ``symmetry`` is on) and its lost-message flag; each key maps
  to the budgets it was reached with. A state reached again with no more budget in
  every component than before is not expanded again. Two distinct states sharing a
  fingerprint would hide one of them: the result reports the bound on that chance.
* **Breadth first, in a fixed order.** A frontier node carries its *path*, the index of
  each transition from the start among its parent's transitions; a layer is expanded in
  path order, and that order decides everything order-dependent (which budgets are
  kept, the first violation, a ``max_states`` stop). So the first violation found has a
  shortest trace, and the outcome does not depend on how many workers share the search.
* **Partitions.** With ``workers > 1`` each worker process owns the states whose
  fingerprint is its index modulo the worker count: it keeps their visited entries. A
  child owned by another worker is sent there as a *ticket* (fingerprint, budgets, path:
  a few dozen bytes, one batch per layer and destination); each owner accepts its own
  candidates and the tickets in path order and tells each sender which of its tickets
  were new. The worker that made a child keeps its snapshot and expands it in the next
  layer, so snapshots cross between processes only to even out the frontiers (the
  surplus of the longer ones, pickled once per layer and pair). Who expands a state
  changes nothing but the time: a node's children are a function of its snapshot. The
  coordinator only gathers counts, routes the replies, balances the frontiers and keeps
  the first violation and the cut-off that a violation or ``max_states`` makes.
* **The step's invariants after every transition**, also into a state seen before, and
  the spec's (about a state, not a change) on the transition that first reaches it
  (:func:`~coldmig_fsm.verification.explorer.check_step`): a state's fingerprint stands
  for all it decides, so a state seen before was checked then. In a search of several
  workers a state another worker owns is checked by the sender every time.
* **Liveness.** The transitions that need no new request and no fault (delivering a
  message, restarting a compute service, ``reconcile``, the auto-confirm clock) are kept
  as a graph over fingerprints. After a complete search without violation, every state
  visited must reach, in that graph, a *settled* state: no request pending, no instance
  with a task. A state that cannot is reported with its shortest trace, found by a
  second search that stops at the first transition into such a state.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import heapq
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from coldmig_fsm.exceptions import ColdmigError
from coldmig_fsm.machine import Machine
from coldmig_fsm.messages import Message
from coldmig_fsm.runners.cloud import Cloud, CloudSnapshot
from coldmig_fsm.verification.explorer import (
    API_OPS,
    Abstraction,
    Action,
    Observation,
    apply,
    attempt,
    check_step,
    deliverable_faults,
    enabled,
    next_message,
    observe,
)
from coldmig_fsm.verification.model_check import (
    ActionTally,
    Bounds,
    CheckResult,
    KnownIssue,
    SearchProgress,
    _api_candidates,
    _other_actions,
)
from coldmig_fsm.verification.settling import settled, unsettled
from coldmig_fsm.verification.symmetry import Symmetry, canonical

__all__ = ["FINGERPRINT_BITS", "search"]

FINGERPRINT_BITS = 64
_SETTLE_OPS = frozenset({"step", "restart_compute", "reconcile", "advance_clock"})
"""Actions that need no new request (their fault-free form is a liveness edge)."""

Path = tuple[int, ...]
_Graph = tuple[bytes, bytes, bytes, bytes, int, dict[str, list[int]]]
"""What a partition hands over at the end of a complete search: its visited
fingerprints, liveness edges (from, to), settled fingerprints, visited bytes and counts
per kind of action."""
_Tick = Callable[[int, int, int], None]
_TICK = 2000  # transitions between two progress reports within a layer (one process)
_GC_YOUNG = 10_000  # allocations between two collections of the youngest generation
_COMPACT_AFTER = 50_000
"""Nodes a worker's frontier (or its children of a layer) keeps as they are; past this
many, they are kept compressed (:class:`_Frontier`)."""
_CHUNK = 1_000  # nodes per compressed chunk


def _fingerprint(encoding: bytes) -> int:
    digest = hashlib.blake2b(encoding, digest_size=FINGERPRINT_BITS // 8).digest()
    return int.from_bytes(digest, "big")


def _dominated(table: dict[int, Any], fp: int, budgets: tuple[int, ...]) -> bool:
    """Was ``fp`` recorded in ``table`` with at least ``budgets`` in every component?"""
    seen = table.get(fp)
    if seen is None:
        return False
    entries = (seen,) if type(seen[0]) is int else seen
    return any(all(a >= b for a, b in zip(old, budgets, strict=True)) for old in entries)


def _record(
    table: dict[int, Any],
    interned: dict[tuple[int, ...], tuple[int, ...]],
    fp: int,
    budgets: tuple[int, ...],
) -> bool:
    """Record ``budgets`` for ``fp`` in ``table`` (one tuple, or a tuple of them: most
    states are reached with one budget vector); ``True`` when ``fp`` was not in it."""
    budgets = interned.setdefault(budgets, budgets)
    seen = table.get(fp)
    if seen is None:
        table[fp] = budgets
        return True
    entries = (seen,) if type(seen[0]) is int else seen
    table[fp] = (*entries, budgets)
    return False


def _table_bytes(table: dict[int, Any]) -> int:
    size = sys.getsizeof(table) + sum(sys.getsizeof(fp) for fp in table)
    return size + sum(sys.getsizeof(v) for v in table.values() if type(v[0]) is not int)


_KINDS: dict[tuple[str, str | None], str] = {}


def _kind(action: Action) -> str:
    """:attr:`ActionTally.kind` of ``action``."""
    fault = action.fault
    mode = None if fault is None else ("lost" if fault == "lose" else fault[2])
    key = (action.op, mode)
    kind = _KINDS.get(key)
    if kind is None:
        kind = _KINDS[key] = action.op if mode is None else f"{action.op}: {mode}"
    return kind


def _tallies(counts: Sequence[dict[str, list[int]]]) -> tuple[ActionTally, ...]:
    """The partitions' counts (kind -> [transitions, states]) added up, by kind."""
    total: dict[str, list[int]] = {}
    for count in counts:
        for kind, (transitions, states) in count.items():
            both = total.setdefault(kind, [0, 0])
            both[0] += transitions
            both[1] += states
    return tuple(ActionTally(kind, *total[kind]) for kind in sorted(total))


@attrs.frozen
class _Node:
    """A state to expand: its snapshot, how it was reached and the budgets left."""

    snapshot: CloudSnapshot
    path: Path
    trace: tuple[Action, ...]
    total: int
    ops: tuple[int, ...]  # per instance, in the order of the instances' names
    faults: int
    lost: bool
    fp: int
    first: bool = False  # the first visit of its state: its liveness edges are kept


class _Interrupts:
    """Ctrl-C during a search, held back while the roles run.

    A ``KeyboardInterrupt`` raised in the middle of a store write leaves the memory
    store's undo journal naming a change that was not made; undoing it then fails
    (a ``KeyError``), and that error, not the interrupt, came out of the action: the
    search reported it as a violation. While :attr:`busy` (an action running, the
    working cloud being restored) a SIGINT is only noted, and :meth:`check` raises it
    once the action is over; at any other moment, or at a second SIGINT, it is raised at
    once. Installed by :func:`search` in the main thread only, and only over Python's
    default handler (a program's own handler is left alone).
    """

    __slots__ = ("busy", "pending")

    def __init__(self) -> None:
        self.busy = False
        self.pending = False

    def _signalled(self, signum: int, frame: object) -> None:
        if self.busy and not self.pending:
            self.pending = True
            return
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise the SIGINT held back while the roles ran, if one was."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Hold SIGINTs back while :attr:`busy`, for the duration of the block."""
        if (
            threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return
        self.busy = self.pending = False
        signal.signal(signal.SIGINT, self._signalled)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.busy = self.pending = False


_INTERRUPTS = _Interrupts()


class _Frontier:
    """The nodes of the next layer, in the order they were added.

    A node holds its own copy of the store's top-level containers and of what it
    changed, some kilobytes as Python objects; a large layer would not fit in memory
    that way. Once more than ``compact_after`` nodes are held (``None``: never), they
    are pickled :data:`_CHUNK` at a time, in order (siblings share most of their
    records, and one pickle writes each shared object once) and compressed: a few
    hundred bytes a node. :meth:`drain` gives the nodes back in order, one chunk
    unpacked at a time, and lets each go once given.
    """

    __slots__ = ("_chunks", "_compact_after", "_count", "_tail")

    def __init__(self, compact_after: int | None) -> None:
        self._compact_after = compact_after
        self._chunks: list[bytes] = []
        self._tail: list[_Node] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def compressed(self) -> int:
        """How many nodes are held compressed."""
        return self._count - len(self._tail)

    def append(self, node: _Node) -> None:
        self._tail.append(node)
        self._count += 1
        limit = self._compact_after
        tail = self._tail
        if limit is not None and self._count > limit and len(tail) >= _CHUNK:
            packed = len(tail) - len(tail) % _CHUNK  # in chunks of _CHUNK, oldest first
            for start in range(0, packed, _CHUNK):
                data = pickle.dumps(tail[start : start + _CHUNK], pickle.HIGHEST_PROTOCOL)
                self._chunks.append(zlib.compress(data, 1))
            self._tail = tail[packed:]

    def drain(self) -> Iterator[_Node]:
        """Each node in order, removed as it is given (the frontier is empty after)."""
        chunks, tail = self._chunks, self._tail
        self._chunks, self._tail, self._count = [], [], 0
        chunks.reverse()
        while chunks:
            nodes: list[_Node] = pickle.loads(zlib.decompress(chunks.pop()))
            yield from _emptied(nodes)
        yield from _emptied(tail)


def _new_frontier() -> _Frontier:
    """An empty frontier that compacts past :data:`_COMPACT_AFTER` nodes."""
    return _Frontier(_COMPACT_AFTER)


def _path_of(node: _Node) -> Path:
    return node.path


def _emptied(nodes: list[_Node]) -> Iterator[_Node]:
    """The items of ``nodes`` in order, each dropped from the list as it is given."""
    nodes.reverse()
    while nodes:
        yield nodes.pop()


@attrs.frozen
class _Candidate:
    fp: int
    budgets: tuple[int, ...]  # (total, *ops renamed as the fingerprint's, faults)
    settled: bool
    node: _Node


@attrs.frozen(order=True)
class _Violation:
    path: Path
    trace: tuple[Action, ...] = attrs.field(order=False)
    found: tuple[str, ...] = attrs.field(order=False)
    failed: str = attrs.field(order=False)


@attrs.frozen
class _Setup:
    """What every partition needs to know (inherited by forked workers)."""

    names: tuple[str, ...]
    bounds: Bounds
    fault_budget: int
    machine: Machine
    ignore: tuple[KnownIssue, ...]
    symmetry: Symmetry | None
    liveness: bool
    stuck: frozenset[int] = frozenset()


_Ticket = tuple[int, tuple[int, ...], bool, Path, str]
"""A candidate of a search of several workers, as its owner accepts it (sent there when
another worker owns it): its fingerprint, budgets, settled flag, path and kind of action
(:func:`_kind` of the last action of its trace)."""


@attrs.frozen
class _LayerOut:
    transitions: int
    violation: _Violation | None
    outgoing: dict[int, bytes]  # owner -> pickled list of tickets
    limit_path: Path | None = None  # single partition: the max_states stop


@attrs.frozen
class _Merged:
    accepted: list[Path]  # the paths of this layer's new states that this worker owns
    replies: dict[int, bytes]  # sender -> pickled list of (path, first) of its new ones


def _stuck_report(cloud: Cloud) -> str:
    return f"from here no run without new requests or faults settles everything: {unsettled(cloud)}"


class _Partition:
    """The states one worker owns: visited entries, frontier, liveness graph."""

    def __init__(self, cloud: Cloud, setup: _Setup, index: int, count: int) -> None:
        self.cloud = cloud
        self.setup = setup
        self.index = index
        self.count = count
        self.visited: dict[int, Any] = {}  # fp -> budgets, or a tuple of them
        # The states of other partitions this one sent, with their budgets: the owner
        # holds each with at least those budgets, so sending it again is useless.
        self.forwarded: dict[int, Any] = {}
        self._interned: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.frontier = _new_frontier()
        # With several workers, this layer's children that may be new, in path order
        # (made), the tickets of those this worker owns (held), and which of them its
        # merge accepted, by path, with their ``first`` flags (kept).
        self.made = _new_frontier()
        self.held: list[_Ticket] = []
        self.kept: dict[Path, bool] = {}
        self.node_counts: list[tuple[Path, int]] = []
        self._clean: _Node | None = None  # the node the working cloud is exactly now
        self.edges_from = array("Q")
        self.edges_to = array("Q")
        self.settled = array("Q")
        self._abstraction = Abstraction()  # remembers what messages and guests give
        # Per kind of action: [transitions from this partition's states, states accepted].
        self.by_kind: dict[str, list[int]] = {}

    # -- the visited set ----------------------------------------------------------------

    def dominated(self, fp: int, budgets: tuple[int, ...]) -> bool:
        return _dominated(self.visited, fp, budgets)

    def add(self, fp: int, budgets: tuple[int, ...]) -> bool:
        """Record ``budgets`` for ``fp``; ``True`` when ``fp`` was not visited before."""
        return _record(self.visited, self._interned, fp, budgets)

    def accept(self, candidate: _Candidate) -> bool:
        trace = candidate.node.trace
        kind = _kind(trace[-1]) if trace else None  # None: the initial state
        first = self._admit(candidate.fp, candidate.budgets, candidate.settled, kind)
        if first is None:
            return False
        self.frontier.append(attrs.evolve(candidate.node, first=first))
        return True

    def _admit(
        self, fp: int, budgets: tuple[int, ...], settled: bool, kind: str | None
    ) -> bool | None:
        """Record a state this partition owns, reached by an action of ``kind``:
        ``None`` when dominated (not a new state), else whether ``fp`` is new."""
        if self.dominated(fp, budgets):
            return None
        first = self.add(fp, budgets)
        if first and settled:
            self.settled.append(fp)
        if kind is not None:
            self._tally(kind)[1] += 1
        return first

    def _tally(self, kind: str) -> list[int]:
        counts = self.by_kind.get(kind)
        if counts is None:
            counts = self.by_kind[kind] = [0, 0]
        return counts

    def visited_bytes(self) -> int:
        """What the visited entries take: both tables (own and forwarded), their keys,
        the budget lists and the interned budgets, and the liveness graph."""
        size = sum(_table_bytes(table) for table in (self.visited, self.forwarded))
        size += sum(sys.getsizeof(v) for v in self._interned)
        for kept in (self.edges_from, self.edges_to, self.settled):
            size += sys.getsizeof(kept)
        return size

    # -- keys ---------------------------------------------------------------------------

    def key(
        self,
        total: int,
        ops: tuple[int, ...],
        faults: int,
        lost: bool,
        read: tuple[tuple[Any, ...], list[Any]] | None = None,
    ) -> tuple[int, tuple[int, ...]]:
        """The working cloud's fingerprint, and its budgets renamed as the fingerprint
        (``read``: its picture and names, when they were just read)."""
        setup = self.setup
        picture, named = self._abstraction.picture_and_names(self.cloud) if read is None else read
        encoding, renamed = canonical(picture, ops, setup.names, setup.symmetry, named=named)
        return _fingerprint(encoding + (b"|lost" if lost else b"")), (total, *renamed, faults)

    # -- one layer ----------------------------------------------------------------------

    def expand_layer(self, limit: int | None, tick: _Tick | None = None) -> _LayerOut:
        """Expand the frontier in path order. One partition accepts each new state at
        once (and stops at ``limit`` new states); several hold their own candidates
        and return the others' pickled, per owner. ``tick`` (one process only) hears
        (new states, transitions, nodes left) every :data:`_TICK` transitions."""
        # What is alive now (the visited tables, the frontier) stays alive for the layer:
        # moved out of the cyclic collector's view, it is not traversed again by every
        # collection the layer's allocations trigger (see search()).
        gc.freeze()
        frontier, self.frontier = self.frontier, _new_frontier()
        self.node_counts = []
        self.made = _new_frontier()
        self.held = []
        single = self.count == 1
        outgoing: dict[int, list[_Ticket]] = {}
        transitions = 0
        accepted = 0
        # Drained: a node expanded is let go at once, its snapshot (what its children do
        # not share) freed while the layer goes on.
        size = len(frontier)
        for index, node in enumerate(frontier.drain()):
            left = size - index
            made = 0
            for action, child in self._children(node):
                made += 1
                transitions += 1
                kind = _kind(action)
                self._tally(kind)[0] += 1
                if tick is not None and transitions % _TICK == 0:
                    tick(accepted, transitions, left)
                violation, candidate = child
                if violation is not None:
                    self.node_counts.append((node.path, made))
                    return _LayerOut(transitions, violation, self._pickled(outgoing))
                if candidate is None:
                    continue
                owner = candidate.fp % self.count
                if single:
                    if self.accept(candidate):
                        accepted += 1
                        if limit is not None and accepted >= limit:
                            return _LayerOut(transitions, None, {}, candidate.node.path)
                else:
                    child_node = candidate.node
                    self.made.append(child_node)
                    ticket = (
                        candidate.fp,
                        candidate.budgets,
                        candidate.settled,
                        child_node.path,
                        kind,
                    )
                    if owner == self.index:
                        self.held.append(ticket)
                    else:
                        outgoing.setdefault(owner, []).append(ticket)
            self.node_counts.append((node.path, made))
        return _LayerOut(transitions, None, self._pickled(outgoing))

    @staticmethod
    def _pickled(outgoing: dict[int, list[Any]]) -> dict[int, bytes]:
        return {k: pickle.dumps(v, pickle.HIGHEST_PROTOCOL) for k, v in outgoing.items()}

    def merge(self, incoming: Sequence[tuple[int, bytes]], cutoff: Path | None) -> _Merged:
        """Accept this layer's candidates (own, and the tickets of each sender) in path
        order, those before ``cutoff`` only: the paths of the new states, and for each
        sender which of its tickets were new (with their ``first`` flags)."""
        tickets: list[tuple[Path, int, _Ticket]] = [(t[3], self.index, t) for t in self.held]
        self.held = []
        for sender, batch in incoming:
            tickets.extend((t[3], sender, t) for t in pickle.loads(batch))
        tickets.sort(key=lambda entry: entry[0])
        accepted: list[Path] = []
        replies: dict[int, list[tuple[Path, bool]]] = {}
        for path, sender, (fp, budgets, settled_, _, kind) in tickets:
            if cutoff is not None and path >= cutoff:
                break
            first = self._admit(fp, budgets, settled_, kind)
            if first is None:
                continue
            accepted.append(path)
            if sender == self.index:
                self.kept[path] = first
            else:
                replies.setdefault(sender, []).append((path, first))
        return _Merged(accepted, self._pickled(replies))

    def adopt(self, replies: Sequence[bytes]) -> int:
        """Add to the frontier, in path order, the children this worker made that were
        found new: by its own merge, or by their owners (``replies``, from
        :meth:`merge`); drop the rest; return the frontier's length."""
        kept, self.kept = self.kept, {}
        for batch in replies:
            kept.update(pickle.loads(batch))
        made, self.made = self.made, _new_frontier()
        frontier = self.frontier
        for node in made.drain():  # made in path order: parents in order, then children
            first = kept.get(node.path)
            if first is not None:
                frontier.append(attrs.evolve(node, first=first))
        return len(frontier)

    def give(self, shares: Sequence[tuple[int, int]]) -> dict[int, bytes]:
        """Hand over frontier nodes, ``count`` to each ``(receiver, count)`` of
        ``shares``, pickled per receiver (spread along the frontier)."""
        to: dict[int, int] = {}  # position in the frontier -> receiver
        remaining = list(range(len(self.frontier)))
        for receiver, count in shares:
            step = max(1, len(remaining) // count)
            picked = set(range(len(remaining) - 1, -1, -step)[:count])
            to.update((remaining[i], receiver) for i in picked)
            remaining = [at for i, at in enumerate(remaining) if i not in picked]
        given: dict[int, list[_Node]] = {receiver: [] for receiver, _ in shares}
        kept = _new_frontier()
        for at, node in enumerate(self.frontier.drain()):
            to_whom = to.get(at)
            if to_whom is None:
                kept.append(node)
            else:
                given[to_whom].append(node)
        self.frontier = kept
        return {k: pickle.dumps(v, pickle.HIGHEST_PROTOCOL) for k, v in given.items()}

    def take(self, gifts: Sequence[bytes]) -> int:
        """Add the nodes other workers gave (:meth:`give`, each batch in path order) to
        the frontier, in path order."""
        batches: list[list[_Node]] = [pickle.loads(batch) for batch in gifts]
        merged = _new_frontier()
        for node in heapq.merge(self.frontier.drain(), *batches, key=_path_of):
            merged.append(node)
        self.frontier = merged
        return len(merged)

    def transitions_until(self, cutoff: Path) -> int:
        """Transitions of this layer up to and including the one at ``cutoff``."""
        parent, index = cutoff[:-1], cutoff[-1]
        count = 0
        for path, made in self.node_counts:
            if path < parent:
                count += made
            elif path == parent:
                count += index + 1
        return count

    # -- the children of one node -------------------------------------------------------

    def _children(
        self, node: _Node
    ) -> Iterator[tuple[Action, tuple[_Violation | None, _Candidate | None]]]:
        setup = self.setup
        cloud = self.cloud
        cloud.restore(node.snapshot)
        before = observe(cloud)
        self._clean = node  # enumerating writes nothing: the first child needs no restore
        api = list(_api_candidates(cloud, setup.names, node.ops, node.total, setup.bounds.races))
        others = list(_other_actions(cloud))
        message = next_message(cloud)
        hv = cloud.hypervisor
        ncalls = 0 if hv is None else len(hv.calls)
        index = 0
        for action in api:
            assert action.instance is not None
            which = setup.names.index(action.instance)
            ops = (*node.ops[:which], node.ops[which] - 1, *node.ops[which + 1 :])
            child = self._try(
                node, action, before, index, node.total - 1, ops, node.faults, node.lost
            )
            if child is not None:
                index += 1
                yield action, child
        for action in others:
            lost = node.lost and action.op != "reconcile"
            plain = self._try(node, action, before, index, node.total, node.ops, node.faults, lost)
            if plain is None:
                continue
            made = [] if hv is None else hv.calls[ncalls:]
            index += 1
            yield action, plain
            if node.faults <= 0 or hv is None:
                continue
            delivered = message if action.op == "step" else None
            if delivered is not None:
                made = [c for c in made if c.instance == delivered.instance_uuid]
            for fault in deliverable_faults((c.host, c.call) for c in made):
                if action.op == "reconcile" and fault[2] == "crash":
                    # Cloud.reconcile lets a simulated crash escape (see docs/verification.md).
                    continue
                faulty = attrs.evolve(action, fault=fault)
                child = self._try(
                    node, faulty, before, index, node.total, node.ops, node.faults - 1, lost
                )
                if child is not None:
                    index += 1
                    yield faulty, child
            if delivered is not None:
                losing = attrs.evolve(action, fault="lose")
                child = self._try(
                    node, losing, before, index, node.total, node.ops, node.faults - 1, True
                )
                if child is not None:
                    index += 1
                    yield losing, child

    def _try(
        self,
        node: _Node,
        action: Action,
        before: Observation,
        index: int,
        total: int,
        ops: tuple[int, ...],
        faults: int,
        lost: bool,
    ) -> tuple[_Violation | None, _Candidate | None] | None:
        """``action`` on the node's state: ``None`` if a guard refused it, else the
        violation it makes or the child (``None``: a state already seen, with no more
        budget)."""
        setup = self.setup
        interrupts = _INTERRUPTS
        interrupts.busy = True  # a Ctrl-C waits for the action (see _Interrupts)
        try:
            done = self._act(node, action)
        finally:
            interrupts.busy = False
        interrupts.check()
        if done is None:
            return None
        delivered, error, read = done
        cloud = self.cloud
        path = (*node.path, index)
        trace = (*node.trace, action)
        found = [] if error is None else self._unignored([error])
        if found:
            return _Violation(path, trace, tuple(found), "invariant"), None
        fp, budgets = self.key(total, ops, faults, lost, read if action.op == "race" else None)
        # The spec's invariants are about a state: checked once, on the step that first
        # reaches it (here, or in the partition that sent it); the step's, every time.
        mine = fp % self.count == self.index
        table = self.visited if mine else self.forwarded
        new = fp not in table
        # Idle: nothing can move on its own (no message queued, none lost, no host down).
        idle = new and not cloud.pending() and not lost and all(cloud.is_up(h) for h in cloud.hosts)
        if error is None:
            found = check_step(
                before, cloud, action, delivered, idle=idle, machine=setup.machine, state=new
            )
            found = self._unignored(found)
        if found:
            return _Violation(path, trace, tuple(found), "invariant"), None
        if setup.liveness and node.first and action.op in _SETTLE_OPS and action.fault is None:
            self.edges_from.append(node.fp)
            self.edges_to.append(fp)
        if fp in setup.stuck:
            return _Violation(path, trace, (_stuck_report(cloud),), "liveness"), None
        if _dominated(table, fp, budgets):
            return None, None
        if not mine:
            _record(self.forwarded, self._interned, fp, budgets)
        child = _Node(cloud.snapshot(), path, trace, total, ops, faults, lost, fp)
        return None, _Candidate(fp, budgets, setup.liveness and settled(cloud), child)

    def _act(self, node: _Node, action: Action) -> tuple[Message | None, str | None, Any] | None:
        """``action`` on the node's state, in the working cloud: ``None`` if a guard
        refused it, else the message it delivered, what it raised (as a violation's
        text) and, for a race, the picture and names it left (see
        :func:`~coldmig_fsm.verification.explorer.submit_race`)."""
        cloud = self.cloud
        if self._clean is not node:
            cloud.restore(node.snapshot)
        submit: Callable[[], object] | None = None
        if action.op in API_OPS or action.op == "race":
            try:
                submit = enabled(cloud, action, self._abstraction)
            except ColdmigError:
                self._clean = node  # the guards refused it and wrote nothing
                return None
        self._clean = None
        if submit is not None:
            done = attempt(action, submit)  # a race's result: the picture it left
            return None if done is None else (None, done[1], done[0])
        done = attempt(action, lambda: apply(cloud, action))
        return None if done is None else (done[0], done[1], None)

    def _unignored(self, found: list[str]) -> list[str]:
        """The violations ``found`` that no known issue ignores."""
        cloud, ignore = self.cloud, self.setup.ignore
        return [v for v in found if not any(k.matches(cloud, v) for k in ignore)]


# --- workers -------------------------------------------------------------------------


class _Local:
    """The partition of a one-process search, called directly."""

    def __init__(self, partition: _Partition) -> None:
        self.partition = partition

    def call(self, command: str, *args: Any) -> Any:
        return _dispatch(self.partition, command, args)


def _dispatch(partition: _Partition, command: str, args: tuple[Any, ...]) -> Any:
    if command == "expand":
        return partition.expand_layer(*args)
    if command == "merge":
        return partition.merge(*args)
    if command == "adopt":
        return partition.adopt(*args)
    if command == "give":
        return partition.give(*args)
    if command == "take":
        return partition.take(*args)
    if command == "until":
        return partition.transitions_until(*args)
    if command == "frontier":
        return len(partition.frontier)
    if command == "graph":
        return (
            array("Q", partition.visited).tobytes(),
            partition.edges_from.tobytes(),
            partition.edges_to.tobytes(),
            partition.settled.tobytes(),
            partition.visited_bytes(),
            partition.by_kind,
        )
    raise ValueError(f"unknown command {command!r}")


_WORKER_STATE: dict[str, Any] = {}
"""What a forked worker inherits: the root cloud, its snapshot and the setup."""


def _worker(index: int, count: int, conn: multiprocessing.connection.Connection) -> None:
    # A Ctrl-C reaches the whole process group: the coordinator handles it (it stops
    # the workers), so a worker does not die with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cloud: Cloud = _WORKER_STATE["cloud"]
    partition = _Partition(cloud, _WORKER_STATE["setup"], index, count)
    root: _Candidate = _WORKER_STATE["root"]
    if root.fp % count == index:
        partition.accept(root)
    while True:
        command, args = conn.recv()
        if command == "stop":
            conn.close()
            return
        try:
            conn.send((True, _dispatch(partition, command, args)))
        except Exception as failed:  # reported to the coordinator, which raises it
            conn.send((False, f"{type(failed).__name__}: {failed}"))


class _Remote:
    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self.conn = conn

    def send(self, command: str, *args: Any) -> None:
        self.conn.send((command, args))

    def receive(self) -> Any:
        ok, value = self.conn.recv()
        if not ok:
            raise RuntimeError(f"a model-check worker failed: {value}")
        return value


def _call_all(workers: Sequence[_Local | _Remote], command: str, *per: Any) -> list[Any]:
    """``command`` on every worker (``per``: one argument tuple per worker, or none)."""
    arguments = per[0] if per else [() for _ in workers]
    if all(isinstance(w, _Local) for w in workers):
        return [w.call(command, *a) for w, a in zip(workers, arguments, strict=True)]  # type: ignore[union-attr]
    for worker, args in zip(workers, arguments, strict=True):
        assert isinstance(worker, _Remote)
        worker.send(command, *args)
    return [w.receive() for w in workers]  # type: ignore[union-attr]


# --- the search ----------------------------------------------------------------------


def search(
    cloud: Cloud,
    bounds: Bounds,
    fault_budget: int,
    *,
    machine: Machine,
    ignore: tuple[KnownIssue, ...],
    symmetry: bool,
    workers: int,
    liveness: bool,
    progress: Callable[[int, int], None] | None,
    monitor: Callable[[SearchProgress], None] | None,
    started: float,
) -> CheckResult:
    """The whole check from ``cloud`` (see the module docstring)."""
    names = tuple(sorted(i.name for i in cloud.store.list_instances()))
    group = Symmetry.of(cloud) if symmetry else None
    setup = _Setup(names, bounds, fault_budget, machine, ignore, group, liveness)
    start = cloud.snapshot()
    # A search allocates snapshots by the hundred thousand and makes no reference cycles
    # (a driver fault's exception once did: see FakeFault.fire): a young generation
    # collected every 10,000 allocations rather than every 700 saves about a tenth of
    # the time, and the workers (forked) inherit the setting.
    threshold = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG, *threshold[1:])
    try:
        with _INTERRUPTS.installed():
            return _search(cloud, start, setup, workers, progress, monitor, started)
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()  # the frozen objects (see _Partition.expand_layer) are the heap's again


def _search(
    cloud: Cloud,
    start: CloudSnapshot,
    setup: _Setup,
    workers: int,
    progress: Callable[[int, int], None] | None,
    monitor: Callable[[SearchProgress], None] | None,
    started: float,
) -> CheckResult:
    liveness = setup.liveness
    first = _run(cloud, setup, workers, progress, monitor, started)
    if not first.ok or not first.complete or not liveness:
        return first.result
    stuck = _stuck(first.graph)
    result = attrs.evolve(first.result, liveness_checked=True)
    if not stuck:
        return result
    cloud.restore(start)  # the first search left the working cloud anywhere
    again = _run(cloud, attrs.evolve(setup, stuck=frozenset(stuck)), workers, None, None, started)
    assert again.result.failed == "liveness", "the liveness search found no stuck state again"
    return attrs.evolve(
        again.result,
        states=result.states,
        transitions=result.transitions,
        depth=result.depth,
        complete=True,
        liveness_checked=True,
        seconds=time.perf_counter() - started,
        visited_bytes=result.visited_bytes,
        by_action=result.by_action,
    )


@attrs.frozen
class _Run:
    result: CheckResult
    graph: list[_Graph]

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def complete(self) -> bool:
        return self.result.complete


def _stuck(graph: list[_Graph]) -> set[int]:
    """The fingerprints from which no liveness edge path reaches a settled state."""
    states: set[int] = set()
    good: set[int] = set()
    sources = array("Q")
    targets = array("Q")
    for visited, edges_from, edges_to, settled_fps, _, _ in graph:
        states.update(array("Q", visited))
        good.update(array("Q", settled_fps))
        sources.frombytes(edges_from)
        targets.frombytes(edges_to)
    # Backwards to a fixpoint: as many passes as the longest way to settle.
    pairs = [(a, b) for a, b in zip(sources, targets, strict=True) if a != b]
    while True:
        grown = [a for a, b in pairs if b in good and a not in good]
        if not grown:
            break
        good.update(grown)
        pairs = [(a, b) for a, b in pairs if a not in good]
    return states - good


def _run(
    cloud: Cloud,
    setup: _Setup,
    count: int,
    progress: Callable[[int, int], None] | None,
    monitor: Callable[[SearchProgress], None] | None,
    started: float,
) -> _Run:
    bounds = setup.bounds
    root_snapshot = cloud.snapshot()
    probe = _Partition(cloud, setup, 0, 1)
    ops = tuple(bounds.ops_per_instance for _ in setup.names)
    fp, budgets = probe.key(bounds.operations, ops, setup.fault_budget, False)
    root = _Candidate(
        fp,
        budgets,
        setup.liveness and settled(cloud),
        _Node(root_snapshot, (), (), bounds.operations, ops, setup.fault_budget, False, fp),
    )

    def finish(
        states: int,
        transitions: int,
        depth: int,
        complete: bool,
        violation: _Violation | None,
        graph: list[Any],
    ) -> _Run:
        return _Run(
            CheckResult(
                states,
                transitions,
                time.perf_counter() - started,
                depth,
                complete,
                None if violation is None else violation.trace,
                () if violation is None else violation.found,
                None if violation is None else violation.failed,
                engine="snapshot",
                symmetry=setup.symmetry is not None,
                workers=count,
                fingerprint_bits=FINGERPRINT_BITS,
                visited_bytes=sum(g[4] for g in graph),
                by_action=_tallies([g[5] for g in graph]),
            ),
            graph,
        )

    if root.fp in setup.stuck:
        return finish(1, 0, 0, True, _Violation((), (), (_stuck_report(cloud),), "liveness"), [])
    processes: list[Any] = []
    pool: list[_Local | _Remote]
    if count == 1:
        partition = _Partition(cloud, setup, 0, 1)
        partition.accept(root)
        pool = [_Local(partition)]
    else:
        _WORKER_STATE.update(cloud=cloud, setup=setup, root=root)
        context = multiprocessing.get_context("fork")
        pool = []
        for index in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(index, count, theirs), daemon=True)
            process.start()
            theirs.close()
            processes.append(process)
            pool.append(_Remote(mine))
        _WORKER_STATE.clear()
    try:
        return _layers(pool, count, bounds, progress, monitor, started, finish)
    except BaseException:  # an interrupt, or a worker that failed: end the others now
        for process in processes:
            process.terminate()
        raise
    finally:
        for worker in pool:
            if isinstance(worker, _Remote):
                with contextlib.suppress(OSError):  # a worker that died reads nothing
                    worker.send("stop")
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def _ticker(
    monitor: Callable[[SearchProgress], None],
    states: int,
    transitions: int,
    depth: int,
    started: float,
) -> _Tick:
    """A layer's progress reports: the figures before it, plus what it found so far."""

    def tick(new: int, made: int, left: int) -> None:
        seconds = time.perf_counter() - started
        monitor(SearchProgress(states + new, transitions + made, left + new, depth, seconds))

    return tick


def _transfers(sizes: Sequence[int]) -> list[list[tuple[int, int]]]:
    """Per worker, the ``(receiver, count)`` of frontier nodes it should hand over so
    that no frontier is longer than another by more than one node: the longest give
    their surplus to the shortest."""
    count = len(sizes)
    total = sum(sizes)
    # The first total % count workers hold one node more.
    target = [total // count + (1 if k < total % count else 0) for k in range(count)]
    order = sorted(range(count), key=lambda k: sizes[k] - target[k])
    surplus = {k: sizes[k] - target[k] for k in range(count)}
    plan: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    low, high = 0, count - 1
    while low < high:
        receiver, donor = order[low], order[high]
        moved = min(-surplus[receiver], surplus[donor])
        if moved <= 0:
            break
        plan[donor].append((receiver, moved))
        surplus[receiver] += moved
        surplus[donor] -= moved
        if surplus[receiver] == 0:
            low += 1
        if surplus[donor] == 0:
            high -= 1
    return plan


def _balance(pool: Sequence[_Local | _Remote], sizes: Sequence[int]) -> None:
    """Even out the workers' frontiers (see :func:`_transfers`)."""
    plan = _transfers(sizes)
    if not any(plan):
        return
    gifts: list[dict[int, bytes]] = _call_all(pool, "give", [(p,) for p in plan])
    _call_all(pool, "take", [([g[k] for g in gifts if k in g],) for k in range(len(pool))])


def _layers(
    pool: Sequence[_Local | _Remote],
    count: int,
    bounds: Bounds,
    progress: Callable[[int, int], None] | None,
    monitor: Callable[[SearchProgress], None] | None,
    started: float,
    finish: Callable[..., _Run],
) -> _Run:
    states, transitions, depth = 1, 0, 0
    while True:
        # The reference stops once a new state makes the count reach max_states.
        limit = None if bounds.max_states is None else max(1, bounds.max_states - states)
        tick = None
        if monitor is not None and count == 1:
            tick = _ticker(monitor, states, transitions, depth, started)
        arguments = [(limit, tick) if count == 1 else (limit,) for _ in pool]
        outs: list[_LayerOut] = _call_all(pool, "expand", arguments)
        found = [o.violation for o in outs if o.violation is not None]
        violation = min(found) if found else None
        if count == 1:
            out = outs[0]
            new = _call_all(pool, "frontier")[0]
            if out.limit_path is not None:
                return finish(states + new, transitions + out.transitions, depth, False, None, [])
            transitions += out.transitions
            states += new
        else:
            cutoff = None if violation is None else violation.path
            incoming = [
                [(s, o.outgoing[k]) for s, o in enumerate(outs) if k in o.outgoing]
                for k in range(count)
            ]
            merged: list[_Merged] = _call_all(
                pool, "merge", [(incoming[k], cutoff) for k in range(count)]
            )
            accepted = [m.accepted for m in merged]
            new = sum(len(a) for a in accepted)
            if limit is not None and new >= limit:
                last = sorted(p for a in accepted for p in a)[limit - 1]
                made = sum(_call_all(pool, "until", [(last,) for _ in pool]))
                return finish(states + limit, transitions + made, depth, False, None, [])
            states += new
            if violation is not None:
                transitions += sum(_call_all(pool, "until", [(violation.path,) for _ in pool]))
            else:
                transitions += sum(o.transitions for o in outs)
                replies = [[m.replies[k] for m in merged if k in m.replies] for k in range(count)]
                _balance(pool, _call_all(pool, "adopt", [(r,) for r in replies]))
        if violation is not None:
            return finish(states, transitions, depth, True, violation, [])
        if new == 0:
            return finish(states, transitions, depth, True, None, _call_all(pool, "graph"))
        depth += 1
        if progress is not None:
            progress(states, transitions)
        if monitor is not None:
            frontier = sum(_call_all(pool, "frontier")) if count > 1 else new
            monitor(
                SearchProgress(states, transitions, frontier, depth, time.perf_counter() - started)
            )
