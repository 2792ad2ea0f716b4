"""What every command shares for its output: the consoles, the logger, JSON, failing.

Commands print tables and prose on :data:`out`, problems on :data:`err`, and machine
output with :func:`print_json`; :func:`fail` is the one way a command gives up (one line
on stderr, then exit 2 unless told otherwise).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from coldmig_fsm.records import Instance

__all__ = [
    "JSON_OPTION",
    "err",
    "fail",
    "instance_line",
    "log",
    "out",
    "print_json",
    "show_markdown",
]

# The commands' records have always carried this name (users filter on it, tests match
# it); it stays the name of the whole command line, whichever module logs.
log = logging.getLogger("coldmig_fsm.cli.app")

out = Console()
err = Console(stderr=True)

JSON_OPTION = typer.Option("--json", help="Print JSON on stdout instead of tables.")


def fail(message: str, status: int = 2) -> NoReturn:
    """One line on stderr (what, why, what to do), then exit ``status``."""
    err.print(f"[bold red]error[/]: {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(status)


def print_json(data: Any, *, compact: bool = False) -> None:
    """``data`` as JSON on stdout: indented, or on one line when ``compact``."""
    sys.stdout.write(json.dumps(data, indent=None if compact else 2) + "\n")


def show_markdown(text: str, *, raw: bool) -> None:
    """Raw Markdown when asked or piped (what ``make docs`` writes), rendered otherwise."""
    if raw or not out.is_terminal:
        sys.stdout.write(text)
    else:
        out.print(Markdown(text))


def instance_line(instance: Instance) -> str:
    """One instance's state in fixed columns, as the demo and the libvirt commands print it."""
    task = instance.task_state.value if instance.task_state else "-"
    return (
        f"{instance.vm_state.value:<8} task={task:<17} power={instance.power_state.label:<8} "
        f"host={instance.host} flavor={instance.flavor}"
    )
