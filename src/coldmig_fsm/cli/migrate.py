"""``coldmig migrate``, ``confirm`` and ``revert``: one guest moved between libvirt hosts.

``migrate`` adopts the guest when the store does not know it yet (its flavor is matched
by size, or one is made for it) and leaves the store in ``--db``, where ``confirm`` and
``revert`` find the migration again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from coldmig_fsm.cli._libvirt import libvirt_cloud, settle
from coldmig_fsm.cli._output import err
from coldmig_fsm.exceptions import ColdmigError
from coldmig_fsm.records import Flavor
from coldmig_fsm.states import VmState

__all__ = ["confirm", "migrate", "revert"]

_SOURCE = typer.Option(metavar="URI", help="libvirt URI of the source host.")
_DEST = typer.Option(metavar="URI", help="libvirt URI of the destination host.")
_SOURCE_IMAGES = typer.Option(metavar="DIR", help="Image directory on the source.")
_DEST_IMAGES = typer.Option(metavar="DIR", help="Image directory on the dest.")
_DOMAIN = typer.Argument(metavar="DOMAIN", help="The migrated guest: domain name or UUID.")
_KEPT_DB = typer.Option(metavar="FILE", help="The store `coldmig migrate` wrote.")
_IMAGES = Path("/var/lib/libvirt/images")


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
    cloud, fabric = libvirt_cloud(
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
        settle(cloud, f"{verb} {guest.name}: {source} -> {dest}", operation)
    except ColdmigError as error:
        err.print(f"[bold red]{type(error).__name__}[/]: {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        fabric.close()


def _decide(action: str, domain: str, **options: Any) -> None:
    cloud, fabric = libvirt_cloud(action, **options, must_exist=True)
    try:
        uuid = fabric.driver("dest").describe_guest(domain).uuid
        operation = cloud.confirm_resize(uuid) if action == "confirm" else cloud.revert_resize(uuid)
        settle(cloud, f"{action} {domain}", operation)
    except ColdmigError as error:
        err.print(f"[bold red]{type(error).__name__}[/]: {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        fabric.close()


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
