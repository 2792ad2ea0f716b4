"""The ``coldmig`` command line: the Typer app, its global options and ``main()``.

A thin shell: every command builds what it needs from the library's public API and
prints it with ``rich`` (or as JSON with ``--json``). Each group of commands has its own
module; this one registers them, in the order ``coldmig --help`` lists them:

* :mod:`~coldmig_fsm.cli.docs`: ``states``, ``failures``, ``graph`` (generated documents);
* :mod:`~coldmig_fsm.cli.conformance`: ``conformance`` (the same scenarios through Nova);
* :mod:`~coldmig_fsm.cli.show`: ``show`` (what a database holds);
* :mod:`~coldmig_fsm.cli.demo`: ``demo`` (fake or libvirt hosts);
* :mod:`~coldmig_fsm.cli.migrate`: ``migrate``, ``confirm``, ``revert`` (real libvirt hosts);
* :mod:`~coldmig_fsm.cli.verify`: ``verify`` (the model checker);
* :mod:`~coldmig_fsm.cli.scenario`: ``scenario run``.

What they share lives in private modules: ``_output`` (consoles, logger, JSON, failing),
``_database`` (the ``--db`` checks), ``_libvirt`` (the optional binding, progress).

Exit status, the same for every command:

* 0: done, nothing wrong found;
* 1: the command ran and found something wrong: an operation failed, a scenario's
  ``expect`` block did not match, a counterexample, a conformance difference;
* 2: the command could not run: a bad option, an invalid scenario file, a missing
  optional dependency, a ``--db`` path that cannot be used. One line on stderr says
  what, why and what to do;
* 3: ``coldmig verify --max-states`` stopped before the whole space was explored.

``coldmig scenario run`` with several files exits with the worst status of them.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from coldmig_fsm.cli import conformance, demo, docs, migrate, scenario, show, verify
from coldmig_fsm.cli._output import err, fail, out

__all__ = ["app", "main"]

# --- help text without typer's type placeholders ----------------------------------------
# Typer shows a parameter's Python type in the help (``<bool>`` for a flag, which takes no
# value, ``<list[Path]>`` for an argument). Every option here names its value with a
# metavar (N, FILE, URI); these classes make flags show nothing and arguments show only
# their metavar.


class _Argument(TyperArgument):
    """An argument whose help shows its metavar (``FILE...``), not its Python type."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _plain_help(params: list[Any]) -> None:
    for param in params:
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            param.metavar = ""
        elif type(param) is TyperArgument:
            # Typer builds its own TyperArgument; only the help display differs.
            param.__class__ = _Argument


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_help(params)
        return params


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_help(params)
        return params


app = typer.Typer(
    cls=_Group,
    help="OpenStack Nova's cold migration and resize as an explicit state machine.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
)
scenario_app = typer.Typer(
    cls=_Group,
    help="Run scenario files (docs/scenarios.md).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(scenario_app, name="scenario")

for _command in (
    docs.states,
    docs.failures,
    docs.graph,
    conformance.conformance,
    show.show,
    demo.demo,
    migrate.migrate,
    migrate.confirm,
    migrate.revert,
    verify.verify,
):
    app.command(cls=_Command)(_command)
scenario_app.command("run", cls=_Command)(scenario.scenario_run)


def main() -> None:
    """The ``coldmig`` command: a usage error is one line too (what, and where the help is)."""
    try:
        status = app(prog_name="coldmig", standalone_mode=False)
    except typer.TyperException as error:
        ctx = getattr(error, "ctx", None)
        # Typer's exception classes are private; a group called with nothing to do
        # (NoArgsIsHelpError) shows its help, as Typer does in its own error path.
        if ctx is None or type(error).__name__ == "NoArgsIsHelpError":
            app(prog_name="coldmig")
            return
        command = ctx.command_path
        err.print(
            f"[bold red]error[/]: {escape(command)}: {escape(error.format_message())} "
            f"(see `{escape(command)} --help`)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(error.exit_code)
    except typer.Abort:
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


# --- global options: --version, -v/-q ----------------------------------------------------


class _StderrHandler(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (a test runner swaps it per run)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging must never break the command
            self.handleError(record)


def _version(value: bool) -> None:
    if value:
        out.print(f"coldmig {importlib.metadata.version('coldmig_fsm')}", highlight=False)
        raise typer.Exit()


def _configure_logging(verbose: int, quiet: bool) -> None:
    """Log records of ``coldmig_fsm`` go to stderr: warnings by default, errors with -q,
    info with -v, debug with -vv."""
    logger = logging.getLogger("coldmig_fsm")
    for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(old)  # one per process, also when a test runner calls again
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose)
    handler.setLevel(logging.DEBUG if level is None else level)
    logger.addHandler(handler)
    if verbose:
        # Let info/debug records reach the handler; otherwise the logger's level is left
        # as the embedding application (or the root default, warning) has it.
        logger.setLevel(handler.level)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Log more on stderr: -v info, -vv debug.",
        ),
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log only errors.")] = False,
) -> None:
    """OpenStack Nova's cold migration and resize as an explicit state machine."""
    if verbose and quiet:
        fail("-v and -q contradict each other: give one of them")
    _configure_logging(verbose, quiet)
