"""``coldmig show``: what a store holds, as tables or JSON (the demo prints the same).

:func:`snapshot` reads a store into JSON-ready data; :func:`print_tables` shows that data
as the four tables (instances, migrations, usage, instance actions).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer
from rich.console import Console
from rich.table import Table

from coldmig_fsm.cli._database import open_store
from coldmig_fsm.cli._output import JSON_OPTION, fail, out, print_json
from coldmig_fsm.stores.memory import Store

__all__ = ["print_tables", "show", "snapshot"]


def snapshot(store: Store) -> dict[str, Any]:
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


def _tables(data: dict[str, Any]) -> Iterator[Table]:
    instances = Table(title="Instances")
    for column in ("name", "vm_state", "task_state", "power", "host", "flavor"):
        instances.add_column(column)
    for i in data["instances"]:
        instances.add_row(
            i["name"], i["vm_state"], str(i["task_state"]), i["power_state"], i["host"], i["flavor"]
        )
    yield instances
    migrations = Table(title="Migrations")
    for column in ("id", "instance", "type", "status", "source", "dest", "flavors"):
        migrations.add_column(column)
    for m in data["migrations"]:
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
    for host, used in data["usage"].items():
        usage.add_row(host, str(used["vcpus"]), str(used["ram_mb"]), str(used["disk_gb"]))
    yield usage
    history = Table(title="Instance actions")
    for column in ("instance", "action", "events"):
        history.add_column(column)
    for action in data["actions"]:
        events = ", ".join(f"{e['event']}={e['result']}" for e in action["events"])
        history.add_row(action["instance"], action["action"], events)
    yield history


def print_tables(data: dict[str, Any], console: Console) -> None:
    """A :func:`snapshot` as tables, and how many messages are still queued if any."""
    for table in _tables(data):
        console.print(table)
    if data["queued_messages"]:
        console.print(f"{data['queued_messages']} message(s) still queued")


_DB = Annotated[
    Path,
    typer.Option(
        metavar="FILE",
        help="A database a run left behind: `coldmig demo`, `coldmig migrate`, a SqliteStore.",
    ),
]


def show(
    db: _DB = Path("coldmig-demo.sqlite"),
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Show what a coldmig SQLite database holds: instances, migrations, usage, actions."""
    store = open_store(db, must_exist=True)
    try:
        data = snapshot(store)
    except sqlite3.Error as error:
        fail(f"--db {db}: cannot read it: {error}")
    finally:
        store.close()
    if as_json:
        print_json(data)
    else:
        print_tables(data, out)
