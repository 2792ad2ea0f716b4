"""The ``coldmig`` command line: demo, scenario runner, generated docs.

A thin shell: every command builds what it needs from the library's public API and
prints it with ``rich``. Exit codes of ``coldmig scenario run``: 0 ran and matched its
``expect`` block, 1 did not match (diff on stderr), 2 invalid file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from .cloud import Cloud, Operation
from .conformance import compare, run_nova
from .exceptions import ColdmigError, ScenarioError
from .failure_table import failures_markdown
from .introspect import mermaid, states_markdown
from .records import CloudConfig, Flavor, Host, Instance, Resources
from .scenario import load_scenario, match_expectations, run_scenario
from .sqlite_store import SqliteStore
from .states import VmState
from .verify import KNOWN_ISSUES, Bounds, initial_cloud, model_check

app = typer.Typer(
    help="OpenStack Nova's cold migration and resize as an explicit state machine.",
    no_args_is_help=True,
    add_completion=False,
)
scenario_app = typer.Typer(help="Run scenario files (spec/scenario-format.md).")
app.add_typer(scenario_app, name="scenario")

out = Console()
err = Console(stderr=True)


def main() -> None:
    app()


def _show_markdown(text: str, *, raw: bool) -> None:
    """Raw Markdown when asked or piped (what ``make docs`` writes), rendered otherwise."""
    if raw or not out.is_terminal:
        sys.stdout.write(text)
    else:
        out.print(Markdown(text))


@app.command()
def states(
    markdown: Annotated[bool, typer.Option(help="Print the raw Markdown.")] = False,
) -> None:
    """Print the allowed (vm_state, task_state) pairs and every transition."""
    _show_markdown(states_markdown(), raw=markdown)


@app.command()
def failures(
    markdown: Annotated[bool, typer.Option(help="Print the raw Markdown.")] = False,
) -> None:
    """Run every failure on a fake cloud and print what each leaves (docs/failures.md)."""
    _show_markdown(failures_markdown(), raw=markdown)


@app.command()
def graph(
    failures: Annotated[bool, typer.Option(help="Include error/rollback/delete edges.")] = False,
) -> None:
    """Print the state diagram as mermaid."""
    sys.stdout.write(mermaid(include_failures=failures))


@scenario_app.command("run")
def scenario_run(
    file: Annotated[Path, typer.Argument(help="Scenario file (YAML or JSON).")],
    compact: Annotated[bool, typer.Option(help="One-line JSON.")] = False,
) -> None:
    """Run a scenario on the fake cloud and print the outcome as JSON."""
    try:
        scenario = load_scenario(file)
    except ScenarioError as error:
        err.print(f"[bold red]invalid scenario[/]: {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    output = run_scenario(scenario)
    sys.stdout.write(json.dumps(output, indent=None if compact else 2) + "\n")
    if scenario.expect is not None:
        problems = match_expectations(scenario.expect, output)
        if problems:
            err.print(f"[bold red]{file}: expect did not match[/]", highlight=False)
            for line in problems:
                err.print(f"  - {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)


@app.command()
def conformance(
    files: Annotated[list[Path], typer.Argument(help="Scenario files to run on both.")],
    nova_python: Annotated[
        Path, typer.Option(help="Python of the Nova virtualenv (make conformance-env).")
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
        err.print(f"[bold red]conformance[/]: {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    agree = differ = 0
    for path, scenario in zip(files, scenarios, strict=True):
        differences = compare(run_scenario(scenario), nova[str(path)])
        real = [d for d in differences if d.deliberate is None]
        deliberate = [d for d in differences if d.deliberate is not None]
        note = f" ({len(deliberate)} deliberate)" if deliberate else ""
        if real:
            differ += 1
            out.print(f"[red]DIFFER[/] {path}{note}", highlight=False)
        else:
            agree += 1
            out.print(f"[green]AGREE[/]  {path}{note}", highlight=False)
        for difference in real + (deliberate if show_deliberate else []):
            out.print(f"    {difference.describe()}", highlight=False, soft_wrap=True)
    out.print(f"\n{agree} agree / {differ} differ (of {len(files)} scenarios)")
    if differ:
        raise typer.Exit(1)


# --- the demo --------------------------------------------------------------------------


def _state(instance: Instance) -> str:
    task = instance.task_state.value if instance.task_state else "-"
    return (
        f"{instance.vm_state.value:<8} task={task:<17} power={instance.power_state.label:<8} "
        f"host={instance.host} flavor={instance.flavor}"
    )


def _follow(cloud: Cloud, title: str, operation: Operation) -> None:
    out.rule(f"[bold]{title}")
    name = cloud.instance(operation.instance_uuid).name
    out.print(f"  api            -> {name}: {_state(cloud.instance(name))}", highlight=False)
    while operation.result is None:
        message = cloud.step()
        if message is None:
            break
        role = message.destination
        out.print(
            f"  {message.kind:<20} @ {role:<16} -> {_state(cloud.instance(name))}", highlight=False
        )
    result = operation.wait()
    colour = "green" if result.ok else "red"
    out.print(
        f"  outcome: [{colour}]{result.outcome.value}[/]"
        + (f" ({result.error_type}: {result.error_message})" if result.error_type else "")
    )


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="SQLite file to create (replaced).")] = Path(
        "coldmig-demo.sqlite"
    ),
    driver: Annotated[
        str,
        typer.Option(help="fake (embedded) or libvirt (local QEMU hosts, see docs/libvirt.md)."),
    ] = "fake",
    hosts_env: Annotated[
        Path,
        typer.Option(help="With --driver libvirt: the hosts file of scripts/libvirt-hosts.sh."),
    ] = Path("/tmp/coldmig-libvirt/hosts.env"),
) -> None:
    """A 3-host fake cloud: migrate, resize, confirm and revert a few instances."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if driver == "libvirt":
        _demo_libvirt(db, hosts_env)
        return
    if driver != "fake":
        err.print(f"[bold red]unknown driver[/] {driver!r}: fake or libvirt")
        raise typer.Exit(2)
    store = SqliteStore(db)
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
    cloud.boot("web-1", "m1.small", "compute-1")
    cloud.boot("db-1", "m1.medium", "compute-1")
    cloud.boot("batch-1", "m1.tiny", "compute-2", vm_state=VmState.STOPPED)

    _follow(cloud, "migrate web-1 (active)", cloud.migrate("web-1"))
    _follow(cloud, "confirm web-1", cloud.confirm_resize("web-1"))
    out.rule("[bold]resize db-1 to m1.small (a smaller disk)")
    try:
        cloud.resize("db-1", "m1.small")
    except ColdmigError as error:
        out.print(f"  refused at once, nothing changed: [yellow]{type(error).__name__}[/]: {error}")
    _follow(cloud, "resize db-1 to m1.large", cloud.resize("db-1", "m1.large"))
    _follow(cloud, "revert db-1", cloud.revert_resize("db-1"))
    _follow(cloud, "resize batch-1 (stopped) to m1.small", cloud.resize("batch-1", "m1.small"))
    _follow(
        cloud, "revert batch-1: back on its host, still stopped", cloud.revert_resize("batch-1")
    )
    _follow(cloud, "migrate batch-1 (stopped) to compute-3", cloud.migrate("batch-1", "compute-3"))
    _follow(cloud, "confirm batch-1: stays stopped", cloud.confirm_resize("batch-1"))
    _follow(cloud, "resize web-1 to m1.medium", cloud.resize("web-1", "m1.medium"))
    _follow(cloud, "confirm web-1", cloud.confirm_resize("web-1"))
    _tables(cloud)
    store.close()  # checkpoints the write-ahead log into the file
    out.print(f"\nDatabase left in [bold]{db}[/] ({db.stat().st_size} bytes).")


def _tables(cloud: Cloud) -> None:
    instances = Table(title="Instances")
    for column in ("name", "vm_state", "task_state", "power", "host", "flavor"):
        instances.add_column(column)
    for i in cloud.instances():
        instances.add_row(
            i.name,
            i.vm_state.value,
            str(i.task_state.value if i.task_state else None),
            i.power_state.label,
            i.host,
            i.flavor,
        )
    migrations = Table(title="Migrations")
    for column in ("id", "instance", "type", "status", "source", "dest", "flavors"):
        migrations.add_column(column)
    names = {i.uuid: i.name for i in cloud.instances()}
    for m in cloud.migrations():
        migrations.add_row(
            str(m.id),
            names[m.instance_uuid],
            m.migration_type.value,
            m.status.value,
            m.source_compute,
            str(m.dest_compute),
            f"{m.old_flavor} -> {m.new_flavor}",
        )
    usage = Table(title="Usage per host (claims)")
    for column in ("host", "vcpus", "ram_mb", "disk_gb"):
        usage.add_column(column)
    for host, used in cloud.usage().items():
        usage.add_row(host, str(used.vcpus), str(used.ram_mb), str(used.disk_gb))
    history = Table(title="Instance actions")
    for column in ("instance", "action", "events"):
        history.add_column(column)
    for action in cloud.actions():
        events = ", ".join(f"{e.event}={e.result.value}" for e in action.events)
        history.add_row(names[action.instance_uuid], action.action, events)
    for table in (instances, migrations, usage, history):
        out.print(table)


# --- real libvirt hosts (issue 6) ------------------------------------------------------

_LIBVIRT_FLAVORS = (
    Flavor("v.tiny", vcpus=1, ram_mb=64, root_gb=1),
    Flavor("v.small", vcpus=1, ram_mb=128, root_gb=1),
    Flavor("v.medium", vcpus=2, ram_mb=256, root_gb=2),
)


class _LibvirtProgress:
    """Shows a driver's progress reports: one line per phase, a byte bar for the copy."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: Any = None
        self._started = 0.0

    def __call__(self, report: Any) -> None:
        if report.phase == "copy":
            self._copy(report)
        elif report.done == 0:
            detail = f" ({report.detail})" if report.detail else ""
            out.print(f"  [cyan]{report.phase}[/] on {report.host}{detail}", highlight=False)
        elif report.detail:
            out.print(f"  [cyan]{report.phase}[/] done: {report.detail}", highlight=False)

    def _copy(self, report: Any) -> None:
        if self._task is None:
            if report.done >= report.total and report.total:
                return  # a repeated final report of a copy already shown
            self._started = time.monotonic()
            out.print(
                f"  [cyan]copy[/] from {report.host} ({report.detail}): {report.total} bytes",
                highlight=False,
            )
            if out.is_terminal:
                columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
                self._bar = Progress(TextColumn("  "), *columns, console=out)
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
            out.print(
                f"  [cyan]copy[/] done: {report.done} bytes in {seconds:.2f} s ({rate:.0f} MB/s)",
                highlight=False,
            )


def _libvirt_cloud(
    source: str,
    dest: str,
    source_images: Path,
    dest_images: Path,
    transport: str,
    db: Path,
    shutdown_timeout: int,
) -> tuple[Cloud, Any]:
    # libvirt-python is an optional extra: imported only when a libvirt command runs.
    from .drivers.libvirt import (  # noqa: PLC0415
        LibvirtFabric,
        LocalCopyTransport,
        VolumeStreamTransport,
    )

    if transport not in ("stream", "local"):
        err.print(f"[bold red]unknown transport[/] {transport!r}: stream or local")
        raise typer.Exit(2)
    fabric = LibvirtFabric()
    progress = _LibvirtProgress()
    for name, uri, images in (("source", source, source_images), ("dest", dest, dest_images)):
        fabric.add_host(
            name,
            uri,
            images,
            LocalCopyTransport() if transport == "local" else VolumeStreamTransport(),
            progress=progress,
        )
    config = CloudConfig(shutdown_timeout=shutdown_timeout, shutdown_retry_interval=1)
    return fabric.cloud(_LIBVIRT_FLAVORS, store=SqliteStore(db), config=config), fabric


def _settle(cloud: Cloud, title: str, operation: Operation) -> None:
    out.rule(f"[bold]{title}")
    result = operation.wait()
    name = cloud.instance(operation.instance_uuid).name
    colour = "green" if result.ok else "red"
    out.print(f"  outcome: [{colour}]{result.outcome.value}[/]", highlight=False)
    if result.error_type:
        out.print(f"  {result.error_type}: {result.error_message}", highlight=False)
    out.print(f"  {name}: {_state(cloud.instance(name))}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


_SOURCE = typer.Option(help="libvirt URI of the source host.")
_DEST = typer.Option(help="libvirt URI of the destination host.")
_IMAGES = Path("/var/lib/libvirt/images")


@app.command()
def migrate(
    domain: Annotated[str, typer.Argument(help="Guest on the source: domain name or UUID.")],
    source: Annotated[str, _SOURCE],
    dest: Annotated[str, _DEST],
    flavor: Annotated[
        str | None, typer.Option(help="Resize to this flavor (v.tiny, v.small, v.medium).")
    ] = None,
    source_images: Annotated[Path, typer.Option(help="Image directory on the source.")] = _IMAGES,
    dest_images: Annotated[Path, typer.Option(help="Image directory on the dest.")] = _IMAGES,
    transport: Annotated[str, typer.Option(help="stream (any hosts) or local (one machine).")] = (
        "stream"
    ),
    db: Annotated[Path, typer.Option(help="SQLite store kept for confirm/revert.")] = Path(
        "coldmig-libvirt.sqlite"
    ),
    shutdown_timeout: Annotated[int, typer.Option(help="Seconds of clean shutdown.")] = 60,
) -> None:
    """Cold-migrate (or resize) a libvirt guest from SOURCE to DEST; then confirm or revert."""
    cloud, fabric = _libvirt_cloud(
        source, dest, source_images, dest_images, transport, db, shutdown_timeout
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
        err.print(f"[bold red]{type(error).__name__}[/]: {error}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        fabric.close()


def _decide(action: str, domain: str, **options: Any) -> None:
    cloud, fabric = _libvirt_cloud(**options)
    try:
        uuid = fabric.driver("dest").describe_guest(domain).uuid
        operation = cloud.confirm_resize(uuid) if action == "confirm" else cloud.revert_resize(uuid)
        _settle(cloud, f"{action} {domain}", operation)
    except ColdmigError as error:
        err.print(f"[bold red]{type(error).__name__}[/]: {error}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        fabric.close()


@app.command()
def confirm(
    domain: Annotated[str, typer.Argument(help="The migrated guest: domain name or UUID.")],
    source: Annotated[str, _SOURCE],
    dest: Annotated[str, _DEST],
    source_images: Annotated[Path, typer.Option(help="Image directory on the source.")] = _IMAGES,
    dest_images: Annotated[Path, typer.Option(help="Image directory on the dest.")] = _IMAGES,
    db: Annotated[Path, typer.Option(help="The store `coldmig migrate` wrote.")] = Path(
        "coldmig-libvirt.sqlite"
    ),
) -> None:
    """Confirm a migration made by `coldmig migrate`: the source guest and disks go."""
    _decide(
        "confirm", domain, source=source, dest=dest, source_images=source_images,
        dest_images=dest_images, transport="stream", db=db, shutdown_timeout=60,
    )  # fmt: skip


@app.command()
def revert(
    domain: Annotated[str, typer.Argument(help="The migrated guest: domain name or UUID.")],
    source: Annotated[str, _SOURCE],
    dest: Annotated[str, _DEST],
    source_images: Annotated[Path, typer.Option(help="Image directory on the source.")] = _IMAGES,
    dest_images: Annotated[Path, typer.Option(help="Image directory on the dest.")] = _IMAGES,
    db: Annotated[Path, typer.Option(help="The store `coldmig migrate` wrote.")] = Path(
        "coldmig-libvirt.sqlite"
    ),
) -> None:
    """Revert a migration made by `coldmig migrate`: the guest is back on the source."""
    _decide(
        "revert", domain, source=source, dest=dest, source_images=source_images,
        dest_images=dest_images, transport="stream", db=db, shutdown_timeout=60,
    )  # fmt: skip


def _demo_libvirt(db: Path, hosts_env: Path) -> None:
    """The demo on the local QEMU hosts of scripts/libvirt-hosts.sh."""
    from .drivers.libvirt import LibvirtFabric, LocalCopyTransport  # noqa: PLC0415 (optional)

    if not hosts_env.exists():
        err.print(
            f"[bold red]no libvirt hosts[/]: {hosts_env} is missing; start them with "
            "`sudo scripts/libvirt-hosts.sh start` (or `make demo-libvirt`)"
        )
        raise typer.Exit(2)
    progress = _LibvirtProgress()
    fabric = LibvirtFabric.from_env_file(hosts_env, LocalCopyTransport(), progress=progress)
    names = sorted(fabric.drivers)[:2]
    if len(names) < 2:
        err.print(f"[bold red]{hosts_env}[/]: two hosts are needed")
        raise typer.Exit(2)
    first, second = names
    cloud = fabric.cloud(
        _LIBVIRT_FLAVORS,
        capacity=Resources(8, 8192, 50),
        store=SqliteStore(db),
        config=CloudConfig(shutdown_timeout=1, shutdown_retry_interval=1),
    )
    out.print(
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
        _settle(cloud, "migrate web-1 (running)", cloud.migrate("web-1"))
        _settle(cloud, "confirm web-1", cloud.confirm_resize("web-1"))
        _settle(cloud, "resize db-1 to v.medium", cloud.resize("db-1", "v.medium"))
        _settle(cloud, "revert db-1", cloud.revert_resize("db-1"))
        _settle(cloud, "migrate batch-1 (stopped)", cloud.migrate("batch-1"))
        _settle(cloud, "confirm batch-1: stays stopped", cloud.confirm_resize("batch-1"))
        out.rule("[bold]guests per host (libvirt)")
        for host, guests in cloud.domains().items():
            out.print(f"  {host}: {', '.join(guests) or '-'}")
        _tables(cloud)
    finally:
        for instance in cloud.instances():
            for driver in fabric.drivers.values():
                driver.destroy(instance)
        fabric.close()
    out.print("\nGuests removed from the hosts; the store is left in " + str(db))


@app.command()
def verify(
    instances: Annotated[int, typer.Option(help="Instances (active, stopped, ...).")] = 2,
    hosts: Annotated[int, typer.Option(help="Fake compute hosts.")] = 3,
    faults: Annotated[
        bool, typer.Option(help="Also inject driver faults, crashes and lost messages.")
    ] = False,
    operations: Annotated[int, typer.Option(help="API requests per trace.")] = 2,
    fault_budget: Annotated[int, typer.Option(help="Faults per trace (with --faults).")] = 1,
    ignore_known: Annotated[
        bool, typer.Option(help="Skip the known core issues (coldmig_fsm.verify.KNOWN_ISSUES).")
    ] = False,
) -> None:
    """Model-check a small cloud exhaustively; exit 1 with the shortest counterexample."""
    bounds = Bounds(operations=operations, faults=fault_budget)
    result = model_check(
        lambda: initial_cloud(instances, hosts),
        bounds,
        faults=faults,
        ignore=KNOWN_ISSUES if ignore_known else (),
    )
    table = Table(title=f"model check: {instances} instances x {hosts} hosts")
    table.add_column("bounds")
    table.add_column("states", justify="right")
    table.add_column("transitions", justify="right")
    table.add_column("depth", justify="right")
    table.add_column("seconds", justify="right")
    shown = f"{operations} requests, " + (f"{fault_budget} fault(s)" if faults else "no faults")
    table.add_row(
        shown,
        f"{result.states:,}",
        f"{result.transitions:,}",
        str(result.depth),
        f"{result.seconds:.2f}",
    )
    out.print(table)
    if result.ok:
        out.print("[bold green]no invariant violated[/] in any reachable state", highlight=False)
        return
    out.print(
        f"[bold red]counterexample[/] ({len(result.counterexample or ())} actions):",
        highlight=False,
    )
    for index, action in enumerate(result.counterexample or (), 1):
        out.print(f"  {index}. {action}", highlight=False)
    for violation in result.violations:
        out.print(f"  [red]violates[/]: {violation}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
