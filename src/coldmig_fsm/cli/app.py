"""The ``coldmig`` command line: demo, scenario runner, model checker, generated docs.

A thin shell: every command builds what it needs from the library's public API and
prints it with ``rich`` (or as JSON with ``--json``).

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

import contextlib
import importlib.metadata
import json
import logging
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import attrs
import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from coldmig_fsm.exceptions import ColdmigError, ScenarioError
from coldmig_fsm.harness.conformance import compare, run_nova
from coldmig_fsm.harness.failure_table import failure_rows, failures_markdown
from coldmig_fsm.harness.scenario import Scenario, load_scenario, match_expectations, run_scenario
from coldmig_fsm.machine import MACHINE, Role
from coldmig_fsm.records import CloudConfig, Flavor, Host, Instance, Resources
from coldmig_fsm.runners.cloud import Cloud, Operation
from coldmig_fsm.states import VmState
from coldmig_fsm.stores.memory import Store
from coldmig_fsm.stores.sqlite import SqliteStore
from coldmig_fsm.verification.introspect import mermaid, states_markdown
from coldmig_fsm.verification.model_check import (
    KNOWN_ISSUES,
    Bounds,
    CheckResult,
    initial_cloud,
    model_check,
)

log = logging.getLogger("coldmig_fsm.cli.app")

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

out = Console()
err = Console(stderr=True)

_JSON = typer.Option("--json", help="Print JSON on stdout instead of tables.")


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


def _fail(message: str, status: int = 2) -> NoReturn:
    """One line on stderr (what, why, what to do), then exit ``status``."""
    err.print(f"[bold red]error[/]: {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(status)


def _print_json(data: Any, *, compact: bool = False) -> None:
    sys.stdout.write(json.dumps(data, indent=None if compact else 2) + "\n")


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
        _fail("-v and -q contradict each other: give one of them")
    _configure_logging(verbose, quiet)


# --- generated documents ---------------------------------------------------------------


def _show_markdown(text: str, *, raw: bool) -> None:
    """Raw Markdown when asked or piped (what ``make docs`` writes), rendered otherwise."""
    if raw or not out.is_terminal:
        sys.stdout.write(text)
    else:
        out.print(Markdown(text))


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


@app.command(cls=_Command)
def states(
    markdown: Annotated[bool, typer.Option(help="Print the raw Markdown.")] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Print the allowed (vm_state, task_state) pairs and every transition."""
    if as_json:
        _print_json(_states_data())
    else:
        _show_markdown(states_markdown(), raw=markdown)


@app.command(cls=_Command)
def failures(
    markdown: Annotated[bool, typer.Option(help="Print the raw Markdown.")] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Run every failure on a fake cloud and print what each leaves (docs/failures.md)."""
    if as_json:
        _print_json([attrs.asdict(row) for row in failure_rows()])
    else:
        _show_markdown(failures_markdown(), raw=markdown)


@app.command(cls=_Command)
def graph(
    failures: Annotated[bool, typer.Option(help="Include error/rollback/delete edges.")] = False,
) -> None:
    """Print the state diagram as mermaid."""
    sys.stdout.write(mermaid(include_failures=failures))


# --- scenarios -------------------------------------------------------------------------

_STDIN = "<stdin>"


def _load(file: Path) -> Scenario:
    """``load_scenario``, also for ``-`` (the scenario on stdin, named ``<stdin>``)."""
    if str(file) != "-":
        return load_scenario(file)
    with tempfile.TemporaryDirectory(prefix="coldmig-") as tmp:
        copy = Path(tmp, "stdin.yaml")
        copy.write_text(sys.stdin.read(), encoding="utf-8")
        try:
            scenario = load_scenario(copy)
        except ScenarioError as error:
            raise ScenarioError(str(error).replace(str(copy), _STDIN)) from None
    return attrs.evolve(scenario, path=_STDIN)


def _run_file(file: Path) -> tuple[int, dict[str, Any] | None]:
    """(exit status, outcome) of one scenario file; problems are reported on stderr."""
    log.info("scenario %s", file)
    try:
        scenario = _load(file)
    except ScenarioError as error:
        err.print(
            f"[bold red]invalid scenario[/]: {escape(str(error))}", highlight=False, soft_wrap=True
        )
        return 2, None
    output = run_scenario(scenario)
    if scenario.expect is not None:
        problems = match_expectations(scenario.expect, output)
        if problems:
            err.print(
                f"[bold red]{escape(scenario.path)}: expect did not match[/]",
                highlight=False,
                soft_wrap=True,
            )
            for line in problems:
                err.print(f"  - {escape(line)}", highlight=False, soft_wrap=True)
            return 1, output
    return 0, output


@scenario_app.command("run", cls=_Command)
def scenario_run(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE", help="Scenario files (YAML or JSON); - reads one from stdin."
        ),
    ],
    compact: Annotated[bool, typer.Option(help="One-line JSON.")] = False,
) -> None:
    """Run scenarios on the fake cloud and print each outcome as JSON.

    With one file, its outcome; with several, an object from each file name to its
    outcome. Exit 0 when every file ran and matched its expect block, 1 when one did not
    match (the diff on stderr), 2 when one is invalid: the worst of the files.
    """
    if sum(str(f) == "-" for f in files) > 1:
        _fail("- (stdin) is given more than once: stdin holds one scenario")
    worst = 0
    outcomes: dict[str, dict[str, Any]] = {}
    for file in files:
        status, output = _run_file(file)
        worst = max(worst, status)
        if output is not None:
            outcomes[_STDIN if str(file) == "-" else str(file)] = output
    if len(files) == 1:
        if outcomes:
            _print_json(next(iter(outcomes.values())), compact=compact)
    else:
        _print_json(outcomes, compact=compact)
    if worst:
        raise typer.Exit(worst)


@app.command(cls=_Command)
def conformance(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Scenario files to run on both.")
    ],
    nova_python: Annotated[
        Path,
        typer.Option(metavar="FILE", help="Python of the Nova virtualenv (make conformance-env)."),
    ] = Path(".nova-venv/bin/python"),
    show_deliberate: Annotated[bool, typer.Option(help="List deliberate deviations.")] = False,
) -> None:
    """Run each scenario through Nova 34 and through coldmig_fsm; diff the outcomes.

    Exit 0 when every difference is a documented deliberate deviation, 1 otherwise,
    2 when a file is invalid or Nova cannot be run.
    """
    try:
        scenarios = [load_scenario(f) for f in files]
        nova = run_nova(files, nova_python)
    except (ScenarioError, FileNotFoundError, RuntimeError) as error:
        err.print(
            f"[bold red]conformance[/]: {escape(str(error))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    agree = differ = 0
    for path, scenario in zip(files, scenarios, strict=True):
        differences = compare(run_scenario(scenario), nova[str(path)])
        real = [d for d in differences if d.deliberate is None]
        deliberate = [d for d in differences if d.deliberate is not None]
        note = f" ({len(deliberate)} deliberate)" if deliberate else ""
        if real:
            differ += 1
            out.print(f"[red]DIFFER[/] {escape(str(path))}{note}", highlight=False)
        else:
            agree += 1
            out.print(f"[green]AGREE[/]  {escape(str(path))}{note}", highlight=False)
        for difference in real + (deliberate if show_deliberate else []):
            out.print(f"    {escape(difference.describe())}", highlight=False, soft_wrap=True)
    out.print(f"\n{agree} agree / {differ} differ (of {len(files)} scenarios)")
    if differ:
        raise typer.Exit(1)


# --- SQLite databases: check before use, show what is in one ---------------------------

_SQLITE_HEADER = b"SQLite format 3\x00"
_COLDMIG_TABLES = ("allocation", "counter", "log", "queue", "record")
"""The tables of :class:`SqliteStore`: a file with all of them is a coldmig database."""


def _not_coldmig(db: Path) -> str | None:
    """Why the existing file ``db`` is not a coldmig database; ``None`` when it is one."""
    try:
        with db.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as error:
        return f"cannot read it: {error.strerror}"
    if not header:
        return "the file is empty"
    if header != _SQLITE_HEADER:
        return "no SQLite header"
    try:
        # closing(): ``with connection`` alone commits but does not close.
        uri = f"{db.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as error:
        return f"SQLite cannot read it: {error}"
    missing = [t for t in _COLDMIG_TABLES if t not in tables]
    if missing:
        return f"an SQLite database without coldmig's tables: no {', '.join(missing)}"
    return None


def _check_db(db: Path, *, must_exist: bool = False) -> None:
    """Fail (exit 2) unless ``db`` can hold a coldmig store: a coldmig database, or (when
    not ``must_exist``) a new file in an existing directory. Anything else is left as it
    is: no file that is not a coldmig database is ever overwritten."""
    if db.is_dir():
        _fail(f"--db {db} is a directory: give the path of a file, such as {db / 'coldmig.sqlite'}")
    if not db.exists():
        if must_exist:
            _fail(
                f"--db {db}: no such file: give a database a run left behind "
                "(`coldmig demo` writes coldmig-demo.sqlite)"
            )
        if not db.parent.is_dir():
            _fail(
                f"--db {db}: directory {db.parent} does not exist: create it first or "
                "choose another path"
            )
        return
    reason = _not_coldmig(db)
    if reason is not None:
        _fail(
            f"--db {db} is not a coldmig database ({reason}): it was left untouched; "
            "choose another path"
        )


def _open_store(db: Path, *, must_exist: bool = False) -> SqliteStore:
    _check_db(db, must_exist=must_exist)
    try:
        return SqliteStore(db)
    except sqlite3.Error as error:
        _fail(f"--db {db}: SQLite cannot open it: {error}: check the file's permissions")


def _snapshot(store: Store) -> dict[str, Any]:
    """What a store holds, as JSON-ready data: instances, migrations, usage, actions."""
    names = {i.uuid: i.name for i in store.list_instances()}
    return {
        "instances": [
            {
                "name": i.name,
                "uuid": i.uuid,
                "vm_state": i.vm_state.value,
                "task_state": None if i.task_state is None else i.task_state.value,
                "power_state": i.power_state.label,
                "host": i.host,
                "flavor": i.flavor,
                "locked": i.locked,
            }
            for i in store.list_instances()
        ],
        "migrations": [
            {
                "id": m.id,
                "instance": names.get(m.instance_uuid, m.instance_uuid),
                "type": m.migration_type.value,
                "status": m.status.value,
                "source": m.source_compute,
                "dest": m.dest_compute,
                "old_flavor": m.old_flavor,
                "new_flavor": m.new_flavor,
            }
            for m in store.list_migrations()
        ],
        "usage": {h.name: attrs.asdict(store.usage(h.name)) for h in store.list_hosts()},
        "actions": [
            {
                "instance": names.get(a.instance_uuid, a.instance_uuid),
                "action": a.action,
                "request_id": a.request_id,
                "message": a.message,
                "events": [{"event": e.event, "result": e.result.value} for e in a.events],
            }
            for a in store.list_actions()
        ],
        "queued_messages": len(store.pending_messages()),
    }


def _tables(snapshot: dict[str, Any]) -> Iterator[Table]:
    instances = Table(title="Instances")
    for column in ("name", "vm_state", "task_state", "power", "host", "flavor"):
        instances.add_column(column)
    for i in snapshot["instances"]:
        instances.add_row(
            i["name"], i["vm_state"], str(i["task_state"]), i["power_state"], i["host"], i["flavor"]
        )
    yield instances
    migrations = Table(title="Migrations")
    for column in ("id", "instance", "type", "status", "source", "dest", "flavors"):
        migrations.add_column(column)
    for m in snapshot["migrations"]:
        migrations.add_row(
            str(m["id"]),
            m["instance"],
            m["type"],
            m["status"],
            m["source"],
            str(m["dest"]),
            f"{m['old_flavor']} -> {m['new_flavor']}",
        )
    yield migrations
    usage = Table(title="Usage per host (claims)")
    for column in ("host", "vcpus", "ram_mb", "disk_gb"):
        usage.add_column(column)
    for host, used in snapshot["usage"].items():
        usage.add_row(host, str(used["vcpus"]), str(used["ram_mb"]), str(used["disk_gb"]))
    yield usage
    history = Table(title="Instance actions")
    for column in ("instance", "action", "events"):
        history.add_column(column)
    for action in snapshot["actions"]:
        events = ", ".join(f"{e['event']}={e['result']}" for e in action["events"])
        history.add_row(action["instance"], action["action"], events)
    yield history


def _print_tables(snapshot: dict[str, Any], console: Console) -> None:
    for table in _tables(snapshot):
        console.print(table)
    if snapshot["queued_messages"]:
        console.print(f"{snapshot['queued_messages']} message(s) still queued")


_DB = Annotated[
    Path,
    typer.Option(
        metavar="FILE",
        help="A database a run left behind: `coldmig demo`, `coldmig migrate`, a SqliteStore.",
    ),
]


@app.command(cls=_Command)
def show(
    db: _DB = Path("coldmig-demo.sqlite"),
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Show what a coldmig SQLite database holds: instances, migrations, usage, actions."""
    store = _open_store(db, must_exist=True)
    try:
        snapshot = _snapshot(store)
    except sqlite3.Error as error:
        _fail(f"--db {db}: cannot read it: {error}")
    finally:
        store.close()
    if as_json:
        _print_json(snapshot)
    else:
        _print_tables(snapshot, out)


# --- the demo --------------------------------------------------------------------------


def _state(instance: Instance) -> str:
    task = instance.task_state.value if instance.task_state else "-"
    return (
        f"{instance.vm_state.value:<8} task={task:<17} power={instance.power_state.label:<8} "
        f"host={instance.host} flavor={instance.flavor}"
    )


def _follow(cloud: Cloud, title: str, operation: Operation, say: Console) -> None:
    say.rule(f"[bold]{title}")
    name = cloud.instance(operation.instance_uuid).name
    say.print(f"  api            -> {name}: {_state(cloud.instance(name))}", highlight=False)
    while operation.result is None:
        message = cloud.step()
        if message is None:
            break
        role = message.destination
        say.print(
            f"  {message.kind:<20} @ {role:<16} -> {_state(cloud.instance(name))}", highlight=False
        )
    result = operation.wait()
    colour = "green" if result.ok else "red"
    say.print(
        f"  outcome: [{colour}]{result.outcome.value}[/]"
        + (f" ({result.error_type}: {result.error_message})" if result.error_type else "")
    )


def _replace_db(db: Path) -> None:
    """Make room for a new demo database (checked first: only a coldmig one is replaced)."""
    _check_db(db)
    try:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    except OSError as error:
        _fail(f"--db {db}: cannot replace it: {error.strerror}: choose another path")


@app.command(cls=_Command)
def demo(
    db: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            help="SQLite file to write; an earlier coldmig database there is replaced, "
            "any other file is refused.",
        ),
    ] = Path("coldmig-demo.sqlite"),
    driver: Annotated[
        str,
        typer.Option(
            metavar="fake|libvirt",
            help="fake (embedded) or libvirt (local QEMU hosts, see docs/libvirt.md).",
        ),
    ] = "fake",
    hosts_env: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            help="With --driver libvirt: the hosts file of scripts/libvirt-hosts.sh.",
        ),
    ] = Path("/tmp/coldmig-libvirt/hosts.env"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only the final state, as JSON.")
    ] = False,
) -> None:
    """A 3-host fake cloud: migrate, resize, confirm and revert a few instances."""
    if driver not in ("fake", "libvirt"):
        _fail(f"--driver {driver!r} is not a driver: give fake or libvirt")
    say = Console(quiet=True) if as_json else out
    if driver == "libvirt":
        _require_libvirt("demo --driver libvirt")
        _replace_db(db)
        _demo_libvirt(db, hosts_env, say, as_json)
        return
    _replace_db(db)
    store = _open_store(db)
    cloud = Cloud.build(
        hosts=[
            Host("compute-1", vcpus=16, ram_mb=32768, disk_gb=500),
            Host("compute-2", vcpus=16, ram_mb=32768, disk_gb=500),
            Host("compute-3", vcpus=8, ram_mb=16384, disk_gb=250),
        ],
        flavors=[
            Flavor("m1.tiny", vcpus=1, ram_mb=512, root_gb=1),
            Flavor("m1.small", vcpus=1, ram_mb=2048, root_gb=20),
            Flavor("m1.medium", vcpus=2, ram_mb=4096, root_gb=40),
            Flavor("m1.large", vcpus=4, ram_mb=8192, root_gb=80),
        ],
        store=store,
    )
    log.info("demo: database %s", db)
    cloud.boot("web-1", "m1.small", "compute-1")
    cloud.boot("db-1", "m1.medium", "compute-1")
    cloud.boot("batch-1", "m1.tiny", "compute-2", vm_state=VmState.STOPPED)

    _follow(cloud, "migrate web-1 (active)", cloud.migrate("web-1"), say)
    _follow(cloud, "confirm web-1", cloud.confirm_resize("web-1"), say)
    say.rule("[bold]resize db-1 to m1.small (a smaller disk)")
    try:
        cloud.resize("db-1", "m1.small")
    except ColdmigError as error:
        say.print(f"  refused at once, nothing changed: [yellow]{type(error).__name__}[/]: {error}")
    _follow(cloud, "resize db-1 to m1.large", cloud.resize("db-1", "m1.large"), say)
    _follow(cloud, "revert db-1", cloud.revert_resize("db-1"), say)
    _follow(cloud, "resize batch-1 (stopped) to m1.small", cloud.resize("batch-1", "m1.small"), say)
    _follow(
        cloud,
        "revert batch-1: back on its host, still stopped",
        cloud.revert_resize("batch-1"),
        say,
    )
    _follow(
        cloud,
        "migrate batch-1 (stopped) to compute-3",
        cloud.migrate("batch-1", "compute-3"),
        say,
    )
    _follow(cloud, "confirm batch-1: stays stopped", cloud.confirm_resize("batch-1"), say)
    _follow(cloud, "resize web-1 to m1.medium", cloud.resize("web-1", "m1.medium"), say)
    _follow(cloud, "confirm web-1", cloud.confirm_resize("web-1"), say)
    snapshot = _snapshot(store)
    store.close()  # checkpoints the write-ahead log into the file
    if as_json:
        _print_json({"database": str(db), **snapshot})
        return
    _print_tables(snapshot, out)
    out.print(f"\nDatabase left in [bold]{escape(str(db))}[/] ({db.stat().st_size} bytes).")


# --- real libvirt hosts (issue 6) ------------------------------------------------------

_LIBVIRT_FLAVORS = (
    Flavor("v.tiny", vcpus=1, ram_mb=64, root_gb=1),
    Flavor("v.small", vcpus=1, ram_mb=128, root_gb=1),
    Flavor("v.medium", vcpus=2, ram_mb=256, root_gb=2),
)


def _require_libvirt(command: str) -> None:
    """Fail (exit 2) with what to install when libvirt-python is missing."""
    try:
        import libvirt  # noqa: F401, PLC0415 - an optional extra, only for these commands
    except ImportError:
        _fail(
            f"coldmig {command} needs libvirt-python, which is not installed: install "
            "coldmig_fsm[libvirt] (a source build: see docs/libvirt.md)"
        )


class _LibvirtProgress:
    """Shows a driver's progress reports: one line per phase, a byte bar for the copy."""

    def __init__(self, say: Console) -> None:
        self._say = say
        self._bar: Progress | None = None
        self._task: Any = None
        self._started = 0.0

    def __call__(self, report: Any) -> None:
        if report.phase == "copy":
            self._copy(report)
        elif report.done == 0:
            detail = f" ({report.detail})" if report.detail else ""
            self._say.print(f"  [cyan]{report.phase}[/] on {report.host}{detail}", highlight=False)
        elif report.detail:
            self._say.print(f"  [cyan]{report.phase}[/] done: {report.detail}", highlight=False)

    def _copy(self, report: Any) -> None:
        say = self._say
        if self._task is None:
            if report.done >= report.total and report.total:
                return  # a repeated final report of a copy already shown
            self._started = time.monotonic()
            say.print(
                f"  [cyan]copy[/] from {report.host} ({report.detail}): {report.total} bytes",
                highlight=False,
            )
            if say.is_terminal and not say.quiet:
                columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
                self._bar = Progress(TextColumn("  "), *columns, console=say)
                self._bar.start()
            self._task = self._bar.add_task("copy", total=report.total) if self._bar else 0
        if self._bar is not None:
            self._bar.update(self._task, completed=report.done, total=report.total)
        if report.done >= report.total:
            if self._bar is not None:
                self._bar.stop()
            self._bar, self._task = None, None
            seconds = max(time.monotonic() - self._started, 1e-6)
            rate = report.total / seconds / 1e6
            say.print(
                f"  [cyan]copy[/] done: {report.done} bytes in {seconds:.2f} s ({rate:.0f} MB/s)",
                highlight=False,
            )


def _libvirt_cloud(
    command: str,
    source: str,
    dest: str,
    source_images: Path,
    dest_images: Path,
    transport: str,
    db: Path,
    shutdown_timeout: int,
    *,
    must_exist: bool = False,
) -> tuple[Cloud, Any]:
    _require_libvirt(command)
    # libvirt-python is an optional extra: imported only when a libvirt command runs.
    from coldmig_fsm.drivers.libvirt.driver import (  # noqa: PLC0415
        LibvirtFabric,
        LocalCopyTransport,
        VolumeStreamTransport,
    )

    if transport not in ("stream", "local"):
        _fail(f"--transport {transport!r} is not a transport: give stream or local")
    store = _open_store(db, must_exist=must_exist)
    fabric = LibvirtFabric()
    progress = _LibvirtProgress(out)
    try:
        for name, uri, images in (("source", source, source_images), ("dest", dest, dest_images)):
            fabric.add_host(
                name,
                uri,
                images,
                LocalCopyTransport() if transport == "local" else VolumeStreamTransport(),
                progress=progress,
            )
        config = CloudConfig(shutdown_timeout=shutdown_timeout, shutdown_retry_interval=1)
        return fabric.cloud(_LIBVIRT_FLAVORS, store=store, config=config), fabric
    except (ColdmigError, ValueError) as error:
        fabric.close()
        store.close()
        _fail(f"coldmig {command}: cannot set up the libvirt hosts: {error}")


def _settle(cloud: Cloud, title: str, operation: Operation, say: Console = out) -> None:
    say.rule(f"[bold]{title}")
    result = operation.wait()
    name = cloud.instance(operation.instance_uuid).name
    colour = "green" if result.ok else "red"
    say.print(f"  outcome: [{colour}]{result.outcome.value}[/]", highlight=False)
    if result.error_type:
        say.print(f"  {result.error_type}: {result.error_message}", highlight=False)
    say.print(f"  {name}: {_state(cloud.instance(name))}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


_SOURCE = typer.Option(metavar="URI", help="libvirt URI of the source host.")
_DEST = typer.Option(metavar="URI", help="libvirt URI of the destination host.")
_SOURCE_IMAGES = typer.Option(metavar="DIR", help="Image directory on the source.")
_DEST_IMAGES = typer.Option(metavar="DIR", help="Image directory on the dest.")
_DOMAIN = typer.Argument(metavar="DOMAIN", help="The migrated guest: domain name or UUID.")
_KEPT_DB = typer.Option(metavar="FILE", help="The store `coldmig migrate` wrote.")
_IMAGES = Path("/var/lib/libvirt/images")


@app.command(cls=_Command)
def migrate(
    domain: Annotated[
        str, typer.Argument(metavar="DOMAIN", help="Guest on the source: domain name or UUID.")
    ],
    source: Annotated[str, _SOURCE],
    dest: Annotated[str, _DEST],
    flavor: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Resize to this flavor (v.tiny, v.small, v.medium)."),
    ] = None,
    source_images: Annotated[Path, _SOURCE_IMAGES] = _IMAGES,
    dest_images: Annotated[Path, _DEST_IMAGES] = _IMAGES,
    transport: Annotated[
        str, typer.Option(metavar="stream|local", help="stream (any hosts) or local (one machine).")
    ] = "stream",
    db: Annotated[
        Path, typer.Option(metavar="FILE", help="SQLite store kept for confirm/revert.")
    ] = Path("coldmig-libvirt.sqlite"),
    shutdown_timeout: Annotated[
        int, typer.Option(min=0, metavar="SECONDS", help="Seconds of clean shutdown.")
    ] = 60,
) -> None:
    """Cold-migrate (or resize) a libvirt guest from SOURCE to DEST; then confirm or revert."""
    cloud, fabric = _libvirt_cloud(
        "migrate", source, dest, source_images, dest_images, transport, db, shutdown_timeout
    )
    try:
        guest = fabric.driver("source").describe_guest(domain)
        if guest.uuid not in {i.uuid for i in cloud.instances()}:
            size = (guest.vcpus, guest.ram_mb, guest.root_gb)
            match = [
                f for f in cloud.store.list_flavors() if (f.vcpus, f.ram_mb, f.root_gb) == size
            ]
            current = match[0] if match else Flavor(f"adopted-{guest.uuid[:8]}", *size)
            cloud.store.put_flavor(current)
            state = VmState.ACTIVE if guest.running else VmState.STOPPED
            cloud.boot(guest.name, current.id, "source", uuid=guest.uuid, vm_state=state)
        operation = (
            cloud.resize(guest.uuid, flavor) if flavor else cloud.migrate(guest.uuid, "dest")
        )
        verb = f"resize to {flavor}" if flavor else "migrate"
        _settle(cloud, f"{verb} {guest.name}: {source} -> {dest}", operation)
    except ColdmigError as error:
        err.print(f"[bold red]{type(error).__name__}[/]: {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        fabric.close()


def _decide(action: str, domain: str, **options: Any) -> None:
    cloud, fabric = _libvirt_cloud(action, **options, must_exist=True)
    try:
        uuid = fabric.driver("dest").describe_guest(domain).uuid
        operation = cloud.confirm_resize(uuid) if action == "confirm" else cloud.revert_resize(uuid)
        _settle(cloud, f"{action} {domain}", operation)
    except ColdmigError as error:
        err.print(f"[bold red]{type(error).__name__}[/]: {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        fabric.close()


@app.command(cls=_Command)
def confirm(
    domain: Annotated[str, _DOMAIN],
    source: Annotated[str, _SOURCE],
    dest: Annotated[str, _DEST],
    source_images: Annotated[Path, _SOURCE_IMAGES] = _IMAGES,
    dest_images: Annotated[Path, _DEST_IMAGES] = _IMAGES,
    db: Annotated[Path, _KEPT_DB] = Path("coldmig-libvirt.sqlite"),
) -> None:
    """Confirm a migration made by `coldmig migrate`: the source guest and disks go."""
    _decide(
        "confirm", domain, source=source, dest=dest, source_images=source_images,
        dest_images=dest_images, transport="stream", db=db, shutdown_timeout=60,
    )  # fmt: skip


@app.command(cls=_Command)
def revert(
    domain: Annotated[str, _DOMAIN],
    source: Annotated[str, _SOURCE],
    dest: Annotated[str, _DEST],
    source_images: Annotated[Path, _SOURCE_IMAGES] = _IMAGES,
    dest_images: Annotated[Path, _DEST_IMAGES] = _IMAGES,
    db: Annotated[Path, _KEPT_DB] = Path("coldmig-libvirt.sqlite"),
) -> None:
    """Revert a migration made by `coldmig migrate`: the guest is back on the source."""
    _decide(
        "revert", domain, source=source, dest=dest, source_images=source_images,
        dest_images=dest_images, transport="stream", db=db, shutdown_timeout=60,
    )  # fmt: skip


def _demo_libvirt(db: Path, hosts_env: Path, say: Console, as_json: bool) -> None:
    """The demo on the local QEMU hosts of scripts/libvirt-hosts.sh."""
    from coldmig_fsm.drivers.libvirt.driver import LibvirtFabric, LocalCopyTransport  # noqa: PLC0415 (optional)

    if not hosts_env.is_file():
        _fail(
            f"--hosts-env {hosts_env}: no such file: start the hosts with "
            "`sudo scripts/libvirt-hosts.sh start` (or `make demo-libvirt`)"
        )
    progress = _LibvirtProgress(say)
    try:
        fabric = LibvirtFabric.from_env_file(hosts_env, LocalCopyTransport(), progress=progress)
    except (ColdmigError, ValueError) as error:
        _fail(f"--hosts-env {hosts_env}: {error}")
    names = sorted(fabric.drivers)[:2]
    if len(names) < 2:
        _fail(f"--hosts-env {hosts_env} lists fewer than two hosts: the demo needs two")
    first, second = names
    cloud = fabric.cloud(
        _LIBVIRT_FLAVORS,
        capacity=Resources(8, 8192, 50),
        store=_open_store(db),
        config=CloudConfig(shutdown_timeout=1, shutdown_retry_interval=1),
    )
    say.print(
        f"Hosts: {first} ({fabric.driver(first).uri}), {second} ({fabric.driver(second).uri})"
    )
    try:
        for name in ("web-1", "db-1", "batch-1"):
            stale = cloud.store.find_instance(name)
            for driver in fabric.drivers.values():
                if stale is not None:
                    driver.destroy(stale)
        cloud.boot("web-1", "v.tiny", first)
        cloud.boot("db-1", "v.small", first)
        cloud.boot("batch-1", "v.tiny", second, vm_state=VmState.STOPPED)
        _settle(cloud, "migrate web-1 (running)", cloud.migrate("web-1"), say)
        _settle(cloud, "confirm web-1", cloud.confirm_resize("web-1"), say)
        _settle(cloud, "resize db-1 to v.medium", cloud.resize("db-1", "v.medium"), say)
        _settle(cloud, "revert db-1", cloud.revert_resize("db-1"), say)
        _settle(cloud, "migrate batch-1 (stopped)", cloud.migrate("batch-1"), say)
        _settle(cloud, "confirm batch-1: stays stopped", cloud.confirm_resize("batch-1"), say)
        say.rule("[bold]guests per host (libvirt)")
        domains = cloud.domains()
        for host, guests in domains.items():
            say.print(f"  {host}: {', '.join(guests) or '-'}")
        snapshot = _snapshot(cloud.store)
        if as_json:
            _print_json({"database": str(db), "domains": domains, **snapshot})
        else:
            _print_tables(snapshot, out)
    except ColdmigError as error:
        _fail(f"coldmig demo --driver libvirt: {type(error).__name__}: {error}", status=1)
    finally:
        for instance in cloud.instances():
            for driver in fabric.drivers.values():
                driver.destroy(instance)
        fabric.close()
    say.print("\nGuests removed from the hosts; the store is left in " + str(db))


# --- the model checker -----------------------------------------------------------------

_MAX_HOSTS = 26  # host-a ... host-z


def _verify_data(
    result: CheckResult, instances: int, hosts: int, bounds: Bounds, faults: bool
) -> dict[str, Any]:
    if not result.ok:
        verdict = "counterexample"
    elif not result.complete:
        verdict = "incomplete"
    else:
        verdict = "ok"
    return {
        "result": verdict,
        "instances": instances,
        "hosts": hosts,
        "bounds": {
            "operations": bounds.operations,
            "ops_per_instance": bounds.ops_per_instance,
            "faults": bounds.faults if faults else 0,
            "races": bounds.races,
            "max_states": bounds.max_states,
        },
        "states": result.states,
        "transitions": result.transitions,
        "depth": result.depth,
        "seconds": round(result.seconds, 3),
        "complete": result.complete,
        "counterexample": None
        if result.counterexample is None
        else [str(a) for a in result.counterexample],
        "violations": list(result.violations),
    }


@app.command(cls=_Command)
def verify(
    instances: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="Instances: vm1 active, vm2 stopped, vm3 active..."),
    ] = 2,
    hosts: Annotated[
        int,
        typer.Option(
            min=1, max=_MAX_HOSTS, metavar="N", help="Fake compute hosts (host-a, host-b, ...)."
        ),
    ] = 3,
    operations: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="API requests per trace, all instances together."),
    ] = 2,
    ops_per_instance: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            show_default=False,
            help="API requests each instance may receive per trace (default: as --operations).",
        ),
    ] = None,
    faults: Annotated[
        bool, typer.Option(help="Also inject driver faults, crashes and lost messages.")
    ] = False,
    fault_budget: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", show_default="1", help="Faults per trace (needs --faults)."
        ),
    ] = None,
    races: Annotated[bool, typer.Option(help="Also race two requests on one instance.")] = True,
    max_states: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            show_default=False,
            help="Stop after N states (default: no limit): 'incomplete: bound reached', exit 3.",
        ),
    ] = None,
    ignore_known: Annotated[
        bool,
        typer.Option(
            help="Skip the known core issues (coldmig_fsm.verification.model_check.KNOWN_ISSUES)."
        ),
    ] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Model-check a small cloud exhaustively within the bounds given.

    Exit 0 when no reachable state violates an invariant, 1 with the shortest
    counterexample, 3 when --max-states stopped the search first.
    """
    if fault_budget is not None and not faults:
        _fail("--fault-budget needs --faults: without it no fault is injected")
    per_instance = operations if ops_per_instance is None else ops_per_instance
    bounds = Bounds(
        operations=operations,
        ops_per_instance=per_instance,
        faults=1 if fault_budget is None else fault_budget,
        races=races,
        max_states=max_states,
    )
    reachable = min(operations, instances * per_instance)
    if reachable < operations:
        log.warning(
            "at most %d requests per trace are reachable: %d instance(s) x %d per instance",
            reachable,
            instances,
            per_instance,
        )
    result = model_check(
        lambda: initial_cloud(instances, hosts),
        bounds,
        faults=faults,
        ignore=KNOWN_ISSUES if ignore_known else (),
        progress=lambda states, transitions: log.info(
            "explored %d states, %d transitions", states, transitions
        ),
    )
    status = 1 if not result.ok else (0 if result.complete else 3)
    if as_json:
        _print_json(_verify_data(result, instances, hosts, bounds, faults))
        raise typer.Exit(status)
    _print_verify(result, instances, hosts, bounds, faults)
    raise typer.Exit(status)


def _print_verify(
    result: CheckResult, instances: int, hosts: int, bounds: Bounds, faults: bool
) -> None:
    table = Table(title=f"model check: {instances} instances x {hosts} hosts")
    table.add_column("bounds")
    table.add_column("states", justify="right")
    table.add_column("transitions", justify="right")
    table.add_column("depth", justify="right")
    table.add_column("seconds", justify="right")
    shown = (
        f"{bounds.operations} requests ({min(bounds.ops_per_instance, bounds.operations)} per "
        f"instance), {'races' if bounds.races else 'no races'}, "
        + (f"{bounds.faults} fault(s)" if faults else "no faults")
    )
    table.add_row(
        shown,
        f"{result.states:,}",
        f"{result.transitions:,}",
        str(result.depth),
        f"{result.seconds:.2f}",
    )
    out.print(table)
    if not result.ok:
        out.print(
            f"[bold red]counterexample[/] ({len(result.counterexample or ())} actions):",
            highlight=False,
        )
        for index, action in enumerate(result.counterexample or (), 1):
            out.print(f"  {index}. {escape(str(action))}", highlight=False)
        for violation in result.violations:
            out.print(f"  [red]violates[/]: {escape(violation)}", highlight=False, soft_wrap=True)
    elif not result.complete:
        out.print(
            f"[bold yellow]incomplete: bound reached[/]: --max-states {bounds.max_states} "
            f"stopped the search; no invariant violated in the {result.states:,} states "
            "explored, the rest were not checked",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print("[bold green]no invariant violated[/] in any reachable state", highlight=False)
