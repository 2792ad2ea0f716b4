"""The reference engine of the model checker: a deep copy of the cloud per state.

This is how :func:`~coldmig_fsm.verification.model_check.model_check` worked before it
shared structure between states (issue 14), kept as the baseline its benchmark compares
against (``model_check(..., engine="reference")``) and as the oracle the new engine's
state counts are tested against. It hashes the whole abstract picture (no symmetry, no
fingerprints, one process).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import attrs

from coldmig_fsm.machine import Machine
from coldmig_fsm.messages import Message
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.verification.explorer import (
    Action,
    Observation,
    abstract,
    apply,
    attempt,
    check_step,
    clone,
    deliverable_faults,
    next_message,
    observe,
)
from coldmig_fsm.verification.model_check import (
    Bounds,
    CheckResult,
    KnownIssue,
    _api_actions,
    _other_actions,
    initial_cloud,
)

__all__ = ["reference_model_check"]


@attrs.frozen
class _Node:
    cloud: Cloud
    total: int
    ops: tuple[int, ...]
    faults: int
    lost: bool
    depth: int
    delivered: Message | None = None
    error: str | None = None


def reference_model_check(
    factory: Callable[[], Cloud] | None = None,
    bounds: Bounds | None = None,
    *,
    faults: bool = True,
    machine: Machine,
    ignore: tuple[KnownIssue, ...] = (),
    progress: Callable[[int, int], None] | None = None,
) -> CheckResult:
    """Explore every abstract state reachable within ``bounds``; check every invariant.

    Args:
        factory: builds the initial cloud (default :func:`initial_cloud` with 2 instances
            on 3 hosts). Faults need its ``hypervisor`` (a :class:`FakeHypervisor`).
        bounds: the budgets (default :class:`Bounds`); ``faults=False`` sets the fault
            budget to 0.
        machine: the machine whose allowed states the invariants check against (the
            shipped one; a mutated cloud is still judged by the spec's table).
        ignore: known issues whose violations are skipped (e.g. :data:`KNOWN_ISSUES`).
        progress: called with (states, transitions) after each breadth-first layer.

    Returns:
        the figures, and the shortest counterexample when an invariant is violated.
    """
    bounds = bounds or Bounds()
    started = time.perf_counter()
    cloud = (factory or initial_cloud)()
    names = sorted(i.name for i in cloud.store.list_instances())
    fault_budget = bounds.faults if faults and cloud.hypervisor is not None else 0
    root = _Node(
        cloud,
        bounds.operations,
        tuple(bounds.ops_per_instance for _ in names),
        fault_budget,
        False,
        0,
    )
    parents: dict[Hashable, tuple[Hashable, Action] | None] = {}
    # Abstract state -> budgets it was reached with: a state reached again with no more
    # budget than before (in every component) can do nothing new and is not expanded.
    budgets: dict[Hashable, list[tuple[int, ...]]] = {}
    root_key = _key(root)
    parents[root_key] = None
    budgets[root_key[0]] = [root_key[1]]
    transitions = 0
    depth = 0

    def trace(key: Hashable) -> tuple[Action, ...]:
        actions: list[Action] = []
        link = parents[key]
        while link is not None:
            key, action = link
            actions.append(action)
            link = parents[key]
        return tuple(reversed(actions))

    def result(
        complete: bool, last: tuple[Hashable, Action] | None = None, found: tuple[str, ...] = ()
    ) -> CheckResult:
        return CheckResult(
            len(parents),
            transitions,
            time.perf_counter() - started,
            depth,
            complete,
            None if last is None else (*trace(last[0]), last[1]),
            found,
        )

    initial = check_step(observe(cloud), cloud, Action("start"), None, idle=True, machine=machine)
    if initial:
        return CheckResult(1, 0, time.perf_counter() - started, 0, True, (), tuple(initial))
    frontier: deque[tuple[Hashable, _Node]] = deque([(root_key, root)])
    while frontier:
        key, node = frontier.popleft()
        if progress is not None and node.depth > depth:
            progress(len(parents), transitions)  # the layer above is fully expanded
        depth = max(depth, node.depth)
        before = observe(node.cloud)
        for action, child in _expand(node, names, bounds):
            transitions += 1
            child_key = _key(child)
            # Checked on every transition, also into a state seen before: the step
            # invariants are about the change, not only about where it ends.
            found = [
                v
                for v in _child_checks(before, child, action, machine)
                if not any(k.matches(child.cloud, v) for k in ignore)
            ]
            if found:
                return result(True, (key, action), tuple(found))
            seen = budgets.setdefault(child_key[0], [])
            left = child_key[1]
            if any(all(a >= b for a, b in zip(old, left, strict=True)) for old in seen):
                continue
            seen.append(left)
            parents[child_key] = (key, action)
            if bounds.max_states is not None and len(parents) >= bounds.max_states:
                return result(False)
            frontier.append((child_key, child))
    return result(True)


def _key(node: _Node) -> tuple[Hashable, tuple[int, ...]]:
    """(the abstract state, the budgets left)."""
    return (abstract(node.cloud), node.lost), (node.total, *node.ops, node.faults)


def _child_checks(before: Observation, child: _Node, action: Action, machine: Machine) -> list[str]:
    if child.error is not None:
        return [child.error]
    # Idle: nothing can move on its own (no message queued, none lost, no host down).
    cloud = child.cloud
    idle = not cloud.pending() and not child.lost and all(cloud.is_up(h) for h in cloud.hosts)
    return check_step(before, cloud, action, child.delivered, idle=idle, machine=machine)


def _expand(node: _Node, names: list[str], bounds: Bounds) -> Iterator[tuple[Action, _Node]]:
    cloud = node.cloud
    for action in _api_actions(cloud, names, node.ops, node.total, bounds.races):
        assert action.instance is not None
        index = names.index(action.instance)
        ops = (*node.ops[:index], node.ops[index] - 1, *node.ops[index + 1 :])
        child = _run(node, action, ops=ops, total=node.total - 1)
        if child is not None:
            yield action, child
    for action in _other_actions(cloud):
        lost = node.lost and action.op != "reconcile"
        plain = _run(node, action, lost=lost)
        if plain is None:
            continue
        yield action, plain
        if node.faults <= 0 or cloud.hypervisor is None:
            continue
        assert plain.cloud.hypervisor is not None
        made = plain.cloud.hypervisor.calls[len(cloud.hypervisor.calls) :]
        message = next_message(cloud) if action.op == "step" else None
        if message is not None:
            made = [c for c in made if c.instance == message.instance_uuid]
        for fault in deliverable_faults((c.host, c.call) for c in made):
            if action.op == "reconcile" and fault[2] == "crash":
                # Cloud.reconcile lets a simulated crash escape (see docs/verification.md).
                continue
            faulty = attrs.evolve(action, fault=fault)
            child = _run(node, faulty, faults=node.faults - 1, lost=lost)
            if child is not None:
                yield faulty, child
        if message is not None:
            losing = attrs.evolve(action, fault="lose")
            child = _run(node, losing, faults=node.faults - 1, lost=True)
            if child is not None:
                yield losing, child


def _run(node: _Node, action: Action, **budgets: Any) -> _Node | None:
    """``action`` on a copy of the node's cloud: the child node, ``None`` if refused.

    A race that both requests won, or an exception escaping the cloud, is kept as the
    child's ``error`` (reported as a violation).
    """
    child = clone(node.cloud)
    done = attempt(action, lambda: apply(child, action))
    if done is None:
        return None
    delivered, error = done
    return attrs.evolve(
        node, cloud=child, depth=node.depth + 1, delivered=delivered, error=error, **budgets
    )
