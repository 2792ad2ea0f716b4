"""The cold-migration cloud as a Hypothesis ``RuleBasedStateMachine``.

:class:`ColdMigrationMachine` runs random sequences of every public operation (migrate
with and without a target host, resize, confirm, revert, stop, start, lock, unlock,
delete, abort), races of two requests on one instance, message deliveries one hop at a
time, driver faults (raise, ``InstanceFaultRollback``, hang, crash), lost messages,
compute restarts, ``reconcile`` and auto-confirm clock advances. After every rule it
checks the spec's invariants (:func:`coldmig_fsm.verification.invariants.violations`) and the step
invariants (:func:`coldmig_fsm.verification.explorer.step_violations`): a stopped instance is never
powered on by a move, a confirm or a revert; every state change is in the action
history; a request refused by a guard changes nothing; of two raced requests exactly one
wins.

One line makes it a test case for your own cloud (your driver, your configuration)::

    TestMine = ColdMigrationMachine.for_cloud(my_cloud_factory).TestCase

Fault rules need a :class:`~coldmig_fsm.FakeHypervisor` (``cloud.hypervisor``); with
another driver they are skipped (their preconditions are false).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from hypothesis import settings as Settings  # noqa: N812 - the class, beside the profiles
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coldmig_fsm.drivers.fake import VERBS
from coldmig_fsm.exceptions import ColdmigError
from coldmig_fsm.machine import MACHINE
from coldmig_fsm.operations import OPERATIONS, Argument, Op
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.verification import invariants
from coldmig_fsm.verification.explorer import (
    API_OPS,
    FAULT_MODES,
    RACES,
    Action,
    abstract,
    apply,
    next_message,
    observe,
    other_flavor,
    step_violations,
    tolerated,
)
from coldmig_fsm.verification.model_check import KNOWN_ISSUES, KnownIssue, initial_cloud

__all__ = ["ColdMigrationMachine"]

_INDEX = st.integers(min_value=0, max_value=7)

FIRST_CALL = {
    "resize_instance": "migrate_disk_and_power_off",
    "finish_resize": "finish_migration",
    "confirm_resize": "confirm_migration",
    "revert_resize": "destroy",
    "finish_revert_resize": "finish_revert_migration",
    "stop_instance": "power_off",
    "start_instance": "power_on",
    "terminate_instance": "destroy",
    "abort_migration": "destroy",
}
"""The driver call a message's handler makes first (where a fault hurts most)."""


def _default_cloud() -> Cloud:
    return initial_cloud(instances=2, hosts=3)


class ColdMigrationMachine(RuleBasedStateMachine):
    """Every operation, fault and restart on a small cloud; every invariant after each.

    Class attributes (set by :meth:`for_cloud`):
        factory: builds the cloud each run starts from (default: 2 instances, one
            active and one stopped, on 3 fake hosts; auto-confirm on).
        ignore: known core issues whose violations are not reported
            (:data:`coldmig_fsm.verification.model_check.KNOWN_ISSUES`).
        last_trace: the actions of the latest run, as ``str``; after a failure it is the
            shrunk counterexample (Hypothesis replays it last).
    """

    factory: ClassVar[Callable[[], Cloud]] = staticmethod(_default_cloud)
    ignore: ClassVar[tuple[KnownIssue, ...]] = KNOWN_ISSUES
    last_trace: ClassVar[list[str]] = []

    def __init__(self) -> None:
        super().__init__()
        self.cloud = type(self).factory()
        self.names = sorted(i.name for i in self.cloud.store.list_instances())
        self.lost = False
        self.poisoned = False
        self.trace: list[str] = []
        type(self).last_trace = self.trace

    @classmethod
    def for_cloud(
        cls,
        factory: Callable[[], Cloud],
        *,
        settings: Settings | None = None,
        ignore: tuple[KnownIssue, ...] = KNOWN_ISSUES,
    ) -> type[ColdMigrationMachine]:
        """A subclass whose runs start from ``factory()``; use its ``.TestCase``.

        Args:
            factory: builds a fresh cloud (your drivers, store, configuration).
            settings: Hypothesis settings for its ``TestCase`` (else the active profile).
            ignore: known issues not to report.
        """
        machine: type[ColdMigrationMachine] = type(
            f"{cls.__name__}For_{getattr(factory, '__name__', 'cloud')}",
            (cls,),
            {"factory": staticmethod(factory), "ignore": ignore, "last_trace": []},
        )
        if settings is not None:
            machine.TestCase.settings = settings
        return machine

    # -- helpers ----------------------------------------------------------------------

    def _name(self, index: int) -> str:
        return self.names[index % len(self.names)]

    def _do(self, action: Action) -> None:
        if any(k.avoid is not None and k.avoid(self.cloud, action) for k in self.ignore):
            return
        if self.poisoned:
            return
        before = observe(self.cloud)
        picture = abstract(self.cloud)
        try:
            delivered = apply(self.cloud, action)
        except ColdmigError as refusal:
            if action.op in API_OPS or action.op == "race":
                assert abstract(self.cloud) == picture, (
                    f"`{action}` was refused ({type(refusal).__name__}) but changed the cloud"
                )
                return
            escaped = f"`{action}` raised {type(refusal).__name__}: {refusal}"
            if any(k.matches(self.cloud, escaped) for k in self.ignore):
                # A known issue broke the run; nothing after it would be meaningful.
                self.poisoned = True
                return
            raise AssertionError(escaped) from refusal
        except Exception as escaped:  # the cloud must never let one out: a violation
            raise AssertionError(
                f"`{action}` raised {type(escaped).__name__}: {escaped}"
            ) from escaped
        self.trace.append(str(action))
        problems = step_violations(before, self.cloud, action, delivered)
        assert not problems, "\n".join(problems)

    @property
    def _has_message(self) -> bool:
        return next_message(self.cloud) is not None

    # -- operations ---------------------------------------------------------------------

    # One rule per operation of OPERATIONS (generated below, after the class): a target
    # host for an operation that takes one (or none), the explorers' other flavor for one
    # that takes a flavor.

    def request(self, op: Op, i: int, to: int | None = None) -> None:
        """Ask for ``op`` on instance ``i`` (what each operation's rule does)."""
        name = self._name(i)
        argument = OPERATIONS[op].argument
        arg = None
        if argument is Argument.HOST and to is not None:
            arg = self.cloud.hosts[to % len(self.cloud.hosts)]
        elif argument is Argument.FLAVOR:
            arg = other_flavor(self.cloud, name)
        self._do(Action(op.value, name, arg))

    @rule(i=_INDEX, pair=st.sampled_from(RACES))
    def race(self, i: int, pair: tuple[str, str]) -> None:
        """Two API workers prepare on the same read, then both submit: one must lose."""
        self._do(Action("race", self._name(i), pair[0], pair[1]))

    # -- delivery, faults, restarts, time -------------------------------------------------

    @precondition(lambda self: self._has_message)
    @rule()
    def step(self) -> None:
        self._do(Action("step"))

    @precondition(lambda self: self._has_message and self.cloud.hypervisor is not None)
    @rule(
        host=st.none() | _INDEX,
        call=st.none() | st.sampled_from(VERBS),
        mode=st.sampled_from(FAULT_MODES),
    )
    def step_with_fault(self, host: int | None, call: str | None, mode: str) -> None:
        """Arm a fault for the next message's instance, then deliver it.

        By default (``None``) the fault is on the driver call that message makes first,
        on its destination host; ``host`` and ``call`` pick others. A fault that does not
        fire stays armed for later.
        """
        message = next_message(self.cloud)
        assert message is not None
        hosts = self.cloud.hosts
        where = message.destination.partition(":")[2] or hosts[0]
        if host is not None:
            where = hosts[host % len(hosts)]
        verb = call or FIRST_CALL.get(message.kind, "destroy")
        self._do(Action("step", fault=(where, verb, mode)))

    @precondition(lambda self: self._has_message)
    @rule()
    def lose_message(self) -> None:
        self.lost = True
        self._do(Action("step", fault="lose"))

    @precondition(lambda self: not all(self.cloud.is_up(h) for h in self.cloud.hosts))
    @rule(i=_INDEX)
    def restart_compute(self, i: int) -> None:
        down = [h for h in self.cloud.hosts if not self.cloud.is_up(h)]
        self._do(Action("restart_compute", arg=down[i % len(down)]))

    @rule()
    def reconcile(self) -> None:
        self._do(Action("reconcile"))
        self.lost = False

    @precondition(lambda self: self.cloud.config.resize_confirm_window > 0)
    @rule()
    def advance_clock(self) -> None:
        self._do(Action("advance_clock", arg=str(self.cloud.config.resize_confirm_window)))

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def spec_invariants(self) -> None:
        if self.poisoned:
            return
        cloud = self.cloud
        idle = not cloud.pending() and not self.lost and all(cloud.is_up(h) for h in cloud.hosts)
        problems = [
            v
            for v in invariants.violations(cloud, MACHINE, idle=idle)
            if not tolerated(cloud, v) and not any(k.matches(cloud, v) for k in self.ignore)
        ]
        assert not problems, "\n".join(problems)


def _operation_rule(op: Op) -> Callable[..., None]:
    """The Hypothesis rule that asks for ``op``, named after it (as traces print it)."""

    def named(function: Callable[..., None]) -> Callable[..., None]:
        # Named before rule() wraps it: Hypothesis keeps the name it sees then.
        function.__name__ = op.value
        function.__qualname__ = f"ColdMigrationMachine.{op.value}"
        return function

    if OPERATIONS[op].argument is Argument.HOST:

        @rule(i=_INDEX, to=st.none() | _INDEX)
        @named
        def with_target(self: ColdMigrationMachine, i: int, to: int | None) -> None:
            self.request(op, i, to)

        return with_target

    @rule(i=_INDEX)
    @named
    def on_instance(self: ColdMigrationMachine, i: int) -> None:
        self.request(op, i)

    return on_instance


for _op in Op:
    setattr(ColdMigrationMachine, _op.value, _operation_rule(_op))
