"""What the commands on real libvirt hosts share: the binding check, the cloud, progress.

libvirt-python is an optional extra (``coldmig_fsm[libvirt]``): it is imported only when
one of these commands runs, and its absence is a one-line error with what to install.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from coldmig_fsm.cli._database import open_store
from coldmig_fsm.cli._output import fail, instance_line, out
from coldmig_fsm.exceptions import ColdmigError
from coldmig_fsm.records import CloudConfig, Flavor
from coldmig_fsm.runners.cloud import Cloud, Operation

__all__ = ["LIBVIRT_FLAVORS", "LibvirtProgress", "libvirt_cloud", "require_libvirt", "settle"]

LIBVIRT_FLAVORS = (
    Flavor("v.tiny", vcpus=1, ram_mb=64, root_gb=1),
    Flavor("v.small", vcpus=1, ram_mb=128, root_gb=1),
    Flavor("v.medium", vcpus=2, ram_mb=256, root_gb=2),
)
"""Flavors small enough for software-emulated guests on one machine."""


def require_libvirt(command: str) -> None:
    """Fail (exit 2) with what to install when libvirt-python is missing."""
    try:
        import libvirt  # noqa: F401, PLC0415 - an optional extra, only for these commands
    except ImportError:
        fail(
            f"coldmig {command} needs libvirt-python, which is not installed: install "
            "coldmig_fsm[libvirt] (a source build: see docs/libvirt.md)"
        )


class LibvirtProgress:
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


def libvirt_cloud(
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
    """A cloud of two libvirt hosts named ``source`` and ``dest``, and their fabric.

    Fails (exit 2) when the binding is missing, ``transport`` is not one, ``db`` cannot be
    used or a host cannot be set up.
    """
    require_libvirt(command)
    # libvirt-python is an optional extra: imported only when a libvirt command runs.
    from coldmig_fsm.drivers.libvirt import (  # noqa: PLC0415
        LibvirtFabric,
        LocalCopyTransport,
        VolumeStreamTransport,
    )

    if transport not in ("stream", "local"):
        fail(f"--transport {transport!r} is not a transport: give stream or local")
    store = open_store(db, must_exist=must_exist)
    fabric = LibvirtFabric()
    progress = LibvirtProgress(out)
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
        return fabric.cloud(LIBVIRT_FLAVORS, store=store, config=config), fabric
    except (ColdmigError, ValueError) as error:
        fabric.close()
        store.close()
        fail(f"coldmig {command}: cannot set up the libvirt hosts: {error}")


def settle(cloud: Cloud, title: str, operation: Operation, say: Console = out) -> None:
    """Wait for ``operation`` and print its outcome; exit 1 when it did not succeed."""
    say.rule(f"[bold]{title}")
    result = operation.wait()
    name = cloud.instance(operation.instance_uuid).name
    colour = "green" if result.ok else "red"
    say.print(f"  outcome: [{colour}]{result.outcome.value}[/]", highlight=False)
    if result.error_type:
        say.print(f"  {result.error_type}: {result.error_message}", highlight=False)
    say.print(f"  {name}: {instance_line(cloud.instance(name))}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)
