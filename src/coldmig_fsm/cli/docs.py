"""``coldmig states``, ``failures`` and ``graph``: the documents generated from the machine.

``make docs`` writes docs/states.md and docs/failures.md from the raw Markdown these
commands print; ``--json`` gives the same content as data.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import attrs
import typer

from coldmig_fsm.cli._output import JSON_OPTION, print_json, show_markdown
from coldmig_fsm.harness.failure_table import failure_rows, failures_markdown
from coldmig_fsm.machine import MACHINE, Role
from coldmig_fsm.verification.introspect import mermaid, states_markdown

__all__ = ["failures", "graph", "states"]


def _states_data() -> dict[str, Any]:
    """The machine's table as data: what ``coldmig states`` prints, in the same order."""
    states = []
    for state in sorted(MACHINE.states, key=lambda s: (s.task_state is not None, s.name)):
        api = MACHINE.allowed(state, Role.API)
        states.append(
            {
                "name": state.name,
                "vm_state": state.vm_state.value,
                "task_state": None if state.task_state is None else state.task_state.value,
                "api_actions": list(api),
                "steps": [t for t in MACHINE.allowed(state) if t not in api],
            }
        )
    rules = [
        {
            "trigger": rule.trigger,
            "role": rule.role.value,
            "from": [s.name for s in rule.sources],
            "to": rule.target.describe(),
            "guards": [repr(g) for g in rule.guards],
            "doc": rule.doc,
        }
        for rule in MACHINE.rules
    ]
    return {"states": states, "transitions": rules}


def states(
    markdown: Annotated[bool, typer.Option(help="Print the raw Markdown.")] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Print the allowed (vm_state, task_state) pairs and every transition."""
    if as_json:
        print_json(_states_data())
    else:
        show_markdown(states_markdown(), raw=markdown)


def failures(
    markdown: Annotated[bool, typer.Option(help="Print the raw Markdown.")] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Run every failure on a fake cloud and print what each leaves (docs/failures.md)."""
    if as_json:
        print_json([attrs.asdict(row) for row in failure_rows()])
    else:
        show_markdown(failures_markdown(), raw=markdown)


def graph(
    failures: Annotated[bool, typer.Option(help="Include error/rollback/delete edges.")] = False,
) -> None:
    """Print the state diagram as mermaid."""
    sys.stdout.write(mermaid(include_failures=failures))
