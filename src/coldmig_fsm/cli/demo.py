"""``coldmig demo``: a few migrations, resizes, confirms and reverts, followed step by step.

With the fake driver (the default) it runs a 3-host cloud in process and prints each
message as it is handled; with ``--driver libvirt`` it runs on the two local QEMU hosts of
scripts/libvirt-hosts.sh and removes its guests afterwards. Either way the store is left
in ``--db`` for ``coldmig show``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from coldmig_fsm.cli._database import open_store, replace_db
from coldmig_fsm.cli._libvirt import LIBVIRT_FLAVORS, LibvirtProgress, require_libvirt, settle
from coldmig_fsm.cli._output import fail, instance_line, log, out, print_json
from coldmig_fsm.cli.show import print_tables, snapshot
from coldmig_fsm.exceptions import ColdmigError
from coldmig_fsm.records import CloudConfig, Flavor, Host, Resources
from coldmig_fsm.runners.cloud import Cloud, Operation
from coldmig_fsm.states import VmState

__all__ = ["demo"]


def _follow(cloud: Cloud, title: str, operation: Operation, say: Console) -> None:
    """Run ``operation`` one message at a time, printing the instance after each."""
    say.rule(f"[bold]{title}")
    name = cloud.instance(operation.instance_uuid).name
    say.print(f"  api            -> {name}: {instance_line(cloud.instance(name))}", highlight=False)
    while operation.result is None:
        message = cloud.step()
        if message is None:
            break
        role = message.destination
        say.print(
            f"  {message.kind:<20} @ {role:<16} -> {instance_line(cloud.instance(name))}",
            highlight=False,
        )
    result = operation.wait()
    colour = "green" if result.ok else "red"
    say.print(
        f"  outcome: [{colour}]{result.outcome.value}[/]"
        + (f" ({result.error_type}: {result.error_message})" if result.error_type else "")
    )


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
        fail(f"--driver {driver!r} is not a driver: give fake or libvirt")
    say = Console(quiet=True) if as_json else out
    if driver == "libvirt":
        require_libvirt("demo --driver libvirt")
        replace_db(db)
        _demo_libvirt(db, hosts_env, say, as_json)
        return
    replace_db(db)
    store = open_store(db)
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
    data = snapshot(store)
    store.close()  # checkpoints the write-ahead log into the file
    if as_json:
        print_json({"database": str(db), **data})
        return
    print_tables(data, out)
    out.print(f"\nDatabase left in [bold]{escape(str(db))}[/] ({db.stat().st_size} bytes).")


def _demo_libvirt(db: Path, hosts_env: Path, say: Console, as_json: bool) -> None:
    """The demo on the local QEMU hosts of scripts/libvirt-hosts.sh."""
    from coldmig_fsm.drivers.libvirt import LibvirtFabric, LocalCopyTransport  # noqa: PLC0415 (optional)

    if not hosts_env.is_file():
        fail(
            f"--hosts-env {hosts_env}: no such file: start the hosts with "
            "`sudo scripts/libvirt-hosts.sh start` (or `make demo-libvirt`)"
        )
    progress = LibvirtProgress(say)
    try:
        fabric = LibvirtFabric.from_env_file(hosts_env, LocalCopyTransport(), progress=progress)
    except (ColdmigError, ValueError) as error:
        fail(f"--hosts-env {hosts_env}: {error}")
    names = sorted(fabric.drivers)[:2]
    if len(names) < 2:
        fail(f"--hosts-env {hosts_env} lists fewer than two hosts: the demo needs two")
    first, second = names
    cloud = fabric.cloud(
        LIBVIRT_FLAVORS,
        capacity=Resources(8, 8192, 50),
        store=open_store(db),
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
        settle(cloud, "migrate web-1 (running)", cloud.migrate("web-1"), say)
        settle(cloud, "confirm web-1", cloud.confirm_resize("web-1"), say)
        settle(cloud, "resize db-1 to v.medium", cloud.resize("db-1", "v.medium"), say)
        settle(cloud, "revert db-1", cloud.revert_resize("db-1"), say)
        settle(cloud, "migrate batch-1 (stopped)", cloud.migrate("batch-1"), say)
        settle(cloud, "confirm batch-1: stays stopped", cloud.confirm_resize("batch-1"), say)
        say.rule("[bold]guests per host (libvirt)")
        domains = cloud.domains()
        for host, guests in domains.items():
            say.print(f"  {host}: {', '.join(guests) or '-'}")
        data = snapshot(cloud.store)
        if as_json:
            print_json({"database": str(db), "domains": domains, **data})
        else:
            print_tables(data, out)
    except ColdmigError as error:
        fail(f"coldmig demo --driver libvirt: {type(error).__name__}: {error}", status=1)
    finally:
        for instance in cloud.instances():
            for driver in fabric.drivers.values():
                driver.destroy(instance)
        fabric.close()
    say.print("\nGuests removed from the hosts; the store is left in " + str(db))
