"""The baselines: the package's own table run without the package's machinery.

* :func:`raw_machine` puts the rows of :data:`coldmig_fsm.machine.MACHINE` on a bare
  ``transitions.Machine``, the way a ``transitions`` user would: the same states, one edge
  per (trigger, source) with the same destination, and as conditions plain callables that
  call the very same guard objects and return ``failure is None``. Models are attached
  with ``add_model``.
* :class:`DictTable` is the hand-written version: ``dict[(state, trigger)] -> (dest,
  guards)`` and a loop over the guard tuple.

Neither records *why* a guard refused nor raises the public exception: they are the lower
bound the package's extra work is compared with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transitions import Machine as TransitionsMachine

from coldmig_fsm.guards import Guard, GuardContext
from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.records import Instance

__all__ = ["DictTable", "RawModel", "edge_count", "raw_machine"]


class RawModel:
    """A model object for the raw machine: ``transitions`` sets ``state`` and binds its
    convenience methods (``trigger``, one per event, one ``is_<state>`` per state) on it."""

    state: str
    trigger: Callable[..., bool]

    def __init__(self, instance: Instance, ctx: GuardContext | None = None) -> None:
        self.instance = instance
        self.ctx = ctx


def _condition(guard: Guard) -> Callable[[Any], bool]:
    def condition(event: Any) -> bool:
        return guard(event.model.ctx) is None

    return condition


def edge_count(machine: Machine = MACHINE) -> int:
    return sum(len(rule.sources) for rule in machine.rules)


def raw_machine(machine: Machine = MACHINE, initial: str | None = None) -> Any:
    """A bare ``transitions.Machine`` with ``machine``'s states, edges and guards."""
    edges: list[dict[str, Any]] = []
    for rule in machine.rules:
        conditions = [_condition(g) for g in rule.guards]
        for source in rule.sources:
            edges.append(
                {
                    "trigger": rule.trigger,
                    "source": source.name,
                    "dest": rule.target.resolve(source).name,
                    "conditions": conditions,
                }
            )
    return TransitionsMachine(
        model=None,
        states=sorted(s.name for s in machine.states),
        transitions=edges,
        initial=initial,
        auto_transitions=False,
        send_event=True,
    )


class DictTable:
    """``(state name, trigger) -> (dest name, guards)``, fired by hand."""

    def __init__(self, machine: Machine = MACHINE) -> None:
        self._edges: dict[tuple[str, str], tuple[str, tuple[Guard, ...]]] = {
            (source.name, rule.trigger): (rule.target.resolve(source).name, rule.guards)
            for rule in machine.rules
            for source in rule.sources
        }

    def __len__(self) -> int:
        return len(self._edges)

    def fire(self, model: RawModel, trigger: str) -> bool:
        edge = self._edges.get((model.state, trigger))
        if edge is None:
            return False
        dest, guards = edge
        ctx = model.ctx
        assert ctx is not None
        for guard in guards:
            if guard(ctx) is not None:
                return False
        model.state = dest
        return True
