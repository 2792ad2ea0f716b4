"""Exhaustive model check: every reachable abstract state of a small cloud, breadth first.

:func:`model_check` starts from a cloud (by default :func:`initial_cloud`: ``N``
instances, alternately ``active`` and ``stopped``, on ``M`` small fake hosts with one
flavor pair and auto-confirm on) and explores, breadth first, every :class:`Action`: every
public operation on every instance that its guards accept (``migrate`` to no host and to
each other host, ``resize`` to the other flavor, confirm, revert, stop, start, lock,
unlock, delete, abort), races of two requests on one instance, delivering the next
message, restarting a crashed compute service, ``reconcile`` and an auto-confirm clock
advance. With ``faults``, every driver call a step makes can also raise, raise
``InstanceFaultRollback``, hang or crash its compute service, and every message can be
lost.

States are hashed by :func:`coldmig_fsm.verification.explorer.abstract` together with the budgets
left (see :class:`Bounds`): a state is expanded once. Every invariant is checked after
every transition
(:func:`~coldmig_fsm.verification.explorer.check_step`); the first violation ends the
search with the *shortest* trace from the start that reaches it (breadth first: no
shorter trace violates anything).

To expand a state the cloud is copied (:func:`coldmig_fsm.verification.explorer.clone`, a
``deepcopy`` of its store and fake hypervisor): about 0.5 ms for a small cloud, far
cheaper than replaying the trace from the start.

Example::

    result = model_check(lambda: initial_cloud(instances=2, hosts=3), Bounds(faults=1))
    assert result.ok, result.describe()
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import attrs

from coldmig_fsm.drivers.fake import FakeHypervisor
from coldmig_fsm.exceptions import ColdmigError
from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.messages import Message
from coldmig_fsm.records import CloudConfig, Flavor, Host, Project
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.states import MigrationStatus, VmState
from coldmig_fsm.verification.explorer import (
    API_OPS,
    RACES,
    Action,
    Observation,
    RaceLost,
    abstract,
    apply,
    check_step,
    clone,
    deliverable_faults,
    next_message,
    observe,
    other_flavor,
    prepare,
)

__all__ = ["KNOWN_ISSUES", "Bounds", "CheckResult", "KnownIssue", "initial_cloud", "model_check"]

TINY = Flavor("m1.tiny", vcpus=1, ram_mb=512, root_gb=1)
SMALL = Flavor("m1.small", vcpus=2, ram_mb=1024, root_gb=10)
CONFIRM_WINDOW = 60


@attrs.frozen
class KnownIssue:
    """A violation the core is known to have (filed), skipped when asked to.

    ``matches(cloud, violation)`` says whether ``violation``, seen on ``cloud``, is it.
    """

    name: str
    description: str
    matches: Callable[[Cloud, str], bool]
    avoid: Callable[[Cloud, Action], bool] | None = None
    """For an issue that raises instead of leaving a violation: the actions that would
    trigger it, which the Hypothesis machine then does not take."""


KNOWN_ISSUES: tuple[KnownIssue, ...] = ()
"""Core issues found by this checker and not fixed yet (see docs/verification.md).

Empty: the six it found while it was being built (delete whose destroy fails, a second
abort, a stale ``migrate_server`` after an early abort, a failed rollback's host, a request
left pending by a delete, a guest left behind by a delete during a revert) are fixed and
pinned as regression tests in ``tests/test_verify.py``."""


@attrs.frozen
class Bounds:
    """What makes an exploration finite ("fully explored" means: within these bounds).

    Attributes:
        operations: API requests on one trace, all instances together (a race counts as
            one).
        ops_per_instance: API requests each instance may receive on one trace.
        faults: injected faults per trace: a driver call that fails, hangs or crashes,
            or a lost message (0 when the check runs without faults).
        races: also race two requests on one instance (:data:`RACES`).
        max_states: stop (reporting ``complete=False``) after this many states.

    Raises:
        ValueError: a negative budget, or ``max_states`` below 1.
    """

    operations: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    ops_per_instance: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    faults: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    races: bool = True
    max_states: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )


@attrs.frozen
class CheckResult:
    """What :func:`model_check` found."""

    states: int
    transitions: int
    seconds: float
    depth: int
    complete: bool
    counterexample: tuple[Action, ...] | None = None
    violations: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.counterexample is None

    def describe(self) -> str:
        """The counterexample, one numbered action per line, then what it violates."""
        if self.counterexample is None:
            return "no violation"
        lines = [f"{i}. {a}" for i, a in enumerate(self.counterexample, 1)]
        return "\n".join([*lines, *(f"violates: {v}" for v in self.violations)])


def initial_cloud(
    instances: int = 2,
    hosts: int = 3,
    *,
    machine: Machine = MACHINE,
    config: CloudConfig | None = None,
) -> Cloud:
    """The model checker's start: small hosts, one flavor pair, auto-confirm on.

    Hosts ``host-a``, ``host-b``, ... each fit two ``m1.small`` (so a resize can find no
    room); instance ``vm<i>`` (``m1.tiny``, project ``demo``) is on host ``i mod M``,
    ``active`` for odd ``i`` and ``stopped`` for even ``i``.
    """
    names = [f"host-{chr(ord('a') + i)}" for i in range(hosts)]
    hypervisor = FakeHypervisor()
    drivers = {h: hypervisor.add_host(h) for h in names}
    cloud = Cloud(
        drivers,
        config=config or CloudConfig(resize_confirm_window=CONFIRM_WINDOW),
        machine=machine,
    )
    cloud.hypervisor = hypervisor
    with cloud.store.atomic():
        for host in names:
            cloud.store.put_host(Host(host, vcpus=4, ram_mb=2048, disk_gb=20))
        for flavor in (TINY, SMALL):
            cloud.store.put_flavor(flavor)
        cloud.store.put_project(Project("demo"))
    for i in range(1, instances + 1):
        state = VmState.ACTIVE if i % 2 else VmState.STOPPED
        cloud.boot(f"vm{i}", TINY.id, names[(i - 1) % hosts], "demo", vm_state=state)
    return cloud


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


def _api_actions(cloud: Cloud, names: list[str], node: _Node, races: bool) -> Iterator[Action]:
    for index, name in enumerate(names):
        if node.ops[index] <= 0 or node.total <= 0:
            continue
        instance = cloud.instance(name)
        for op in API_OPS:
            args: list[str | None] = [None]
            if op == "migrate":
                args += [h for h in cloud.hosts if h != instance.host]
            elif op == "resize":
                args = [other_flavor(cloud, name)]
            for arg in args:
                try:
                    prepare(cloud, op, name, arg)
                except ColdmigError:
                    continue
                yield Action(op, name, arg)
        if not races:
            continue
        for first, second in RACES:
            try:
                prepare(cloud, first, name, other_flavor(cloud, name))
                prepare(cloud, second, name, other_flavor(cloud, name))
            except ColdmigError:
                continue
            yield Action("race", name, first, second)


def _other_actions(cloud: Cloud) -> Iterator[Action]:
    if next_message(cloud) is not None:
        yield Action("step")
    for host in cloud.hosts:
        if not cloud.is_up(host):
            yield Action("restart_compute", arg=host)
    waiting = {m.instance_uuid for m in cloud.pending()}
    if any(
        i.task_state is not None and i.uuid not in waiting for i in cloud.store.list_instances()
    ):
        yield Action("reconcile")
    if cloud.config.resize_confirm_window > 0 and any(
        m.status is MigrationStatus.FINISHED for m in cloud.store.list_migrations()
    ):
        yield Action("advance_clock", arg=str(cloud.config.resize_confirm_window))


def model_check(
    factory: Callable[[], Cloud] | None = None,
    bounds: Bounds | None = None,
    *,
    faults: bool = True,
    machine: Machine = MACHINE,
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
    for action in _api_actions(cloud, names, node, bounds.races):
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
    delivered, error = None, None
    try:
        delivered = apply(child, action)
    except ColdmigError as escaped:
        if action.op in API_OPS or action.op == "race":
            return None  # a guard refused it (enabled actions are prepared first)
        error = f"`{action}` raised {type(escaped).__name__}: {escaped}"
    except RaceLost as lost:
        error = f"race on {action.instance}: {lost}"
    except Exception as escaped:  # the cloud must never let one out: a violation
        error = f"`{action}` raised {type(escaped).__name__}: {escaped}"
    return attrs.evolve(
        node, cloud=child, depth=node.depth + 1, delivered=delivered, error=error, **budgets
    )
