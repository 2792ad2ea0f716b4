"""Database files as older coldmig_fsm releases wrote them.

Before schema 2 (:func:`write_legacy`): the schema text is the one ``SqliteStore``
created at schema version 1 (version 0: the same without the aggregates, their triggers
and ``consumer``); the rows are written the way it wrote them, through its triggers, so
that an upgrade is tested on a file of the old layout rather than on a new file made to
look old. Schemas 2 and 3 (:func:`as_schema`) differ from the current one in a few
columns and indexes only: a current file has those taken back out, its tables rebuilt
from the text those schemas created where a column goes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from coldmig_fsm import messages
from coldmig_fsm.records import Fault, Instance, Migration, Notification, Resources
from coldmig_fsm.stores.codec import Codec

QUEUE_3 = (
    "CREATE TABLE queue (\n"
    "\tseq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, \n"
    "\tdestination VARCHAR(255) NOT NULL, \n"
    "\tdata TEXT NOT NULL\n"
    ")"
)
"""The queue table as schemas 2 and 3 created it (no ``instance_uuid``), to the byte."""

SCHEMA_0 = """
CREATE TABLE IF NOT EXISTS record (
    kind TEXT NOT NULL, key TEXT NOT NULL, idx TEXT NOT NULL DEFAULT '', grp TEXT,
    data TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE INDEX IF NOT EXISTS record_group ON record (kind, grp);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS allocation (
    consumer TEXT NOT NULL, host TEXT NOT NULL,
    vcpus INTEGER NOT NULL, ram_mb INTEGER NOT NULL, disk_gb INTEGER NOT NULL,
    PRIMARY KEY (consumer, host));
CREATE INDEX IF NOT EXISTS allocation_host ON allocation (host);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL, data TEXT NOT NULL);
"""

AGGREGATES_1 = """
CREATE TABLE IF NOT EXISTS consumer (consumer TEXT PRIMARY KEY, project TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS host_usage (
    host TEXT PRIMARY KEY,
    vcpus INTEGER NOT NULL, ram_mb INTEGER NOT NULL, disk_gb INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS project_usage (
    project TEXT PRIMARY KEY,
    vcpus INTEGER NOT NULL, ram_mb INTEGER NOT NULL, disk_gb INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS allocation_added AFTER INSERT ON allocation BEGIN
    INSERT INTO host_usage VALUES (NEW.host, NEW.vcpus, NEW.ram_mb, NEW.disk_gb)
        ON CONFLICT (host) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
    INSERT INTO project_usage
        SELECT project, NEW.vcpus, NEW.ram_mb, NEW.disk_gb FROM consumer
        WHERE consumer = NEW.consumer
        ON CONFLICT (project) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
CREATE TRIGGER IF NOT EXISTS allocation_removed AFTER DELETE ON allocation BEGIN
    UPDATE host_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb,
        disk_gb = disk_gb - OLD.disk_gb WHERE host = OLD.host;
    UPDATE project_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb,
        disk_gb = disk_gb - OLD.disk_gb
        WHERE project = (SELECT project FROM consumer WHERE consumer = OLD.consumer);
END;
CREATE TRIGGER IF NOT EXISTS allocation_changed AFTER UPDATE ON allocation BEGIN
    UPDATE host_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb,
        disk_gb = disk_gb - OLD.disk_gb WHERE host = OLD.host;
    UPDATE project_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb,
        disk_gb = disk_gb - OLD.disk_gb
        WHERE project = (SELECT project FROM consumer WHERE consumer = OLD.consumer);
    INSERT INTO host_usage VALUES (NEW.host, NEW.vcpus, NEW.ram_mb, NEW.disk_gb)
        ON CONFLICT (host) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
    INSERT INTO project_usage
        SELECT project, NEW.vcpus, NEW.ram_mb, NEW.disk_gb FROM consumer
        WHERE consumer = NEW.consumer
        ON CONFLICT (project) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
-- A consumer's allocations made before it had an owner start counting for the owner.
CREATE TRIGGER IF NOT EXISTS consumer_owned AFTER INSERT ON consumer BEGIN
    INSERT INTO project_usage
        SELECT NEW.project, SUM(vcpus), SUM(ram_mb), SUM(disk_gb) FROM allocation
        WHERE consumer = NEW.consumer GROUP BY consumer
        ON CONFLICT (project) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
"""


def write_legacy(
    path: Path,
    version: int,
    instances: list[Instance],
    migrations: list[Migration],
    allocations: dict[str, dict[str, Resources]],
    notifications: Sequence[Notification] = (),
    faults: Sequence[Fault] = (),
    queued: Sequence[messages.Message] = (),
) -> None:
    """Write a file of schema ``version`` (0 or 1) holding these records."""
    codec = Codec()
    with contextlib.closing(sqlite3.connect(path)) as db:
        script = SCHEMA_0 + (AGGREGATES_1 if version >= 1 else "")
        db.executescript(script)
        for instance in instances:
            db.execute(
                "INSERT INTO record (kind, key, idx, grp, data) VALUES (?, ?, ?, ?, ?)",
                (
                    "instance",
                    instance.uuid,
                    "" if instance.task_state is None else instance.task_state.value,
                    instance.name,
                    codec.dump(instance),
                ),
            )
            if version >= 1:
                db.execute(
                    "INSERT INTO consumer VALUES (?, ?)", (instance.uuid, instance.project_id)
                )
        for migration in migrations:
            db.execute(
                "INSERT INTO record (kind, key, idx, grp, data) VALUES (?, ?, ?, ?, ?)",
                (
                    "migration",
                    str(migration.id),
                    migration.status.value,
                    migration.instance_uuid,
                    codec.dump(migration),
                ),
            )
            if version >= 1:
                db.execute(
                    "INSERT INTO consumer SELECT ?, project FROM consumer WHERE consumer = ?",
                    (migration.uuid, migration.instance_uuid),
                )
        for consumer, per_host in allocations.items():
            for host, r in per_host.items():
                db.execute(
                    "INSERT INTO allocation VALUES (?, ?, ?, ?, ?)",
                    (consumer, host, r.vcpus, r.ram_mb, r.disk_gb),
                )
        for notification in notifications:
            db.execute(
                "INSERT INTO log (kind, data) VALUES ('notification', ?)",
                (codec.dump(notification),),
            )
        for fault in faults:
            db.execute("INSERT INTO log (kind, data) VALUES ('fault', ?)", (codec.dump(fault),))
        for message in queued:
            db.execute(
                "INSERT INTO queue (destination, data) VALUES (?, ?)",
                (message.destination, codec.dump_message(message)),
            )
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()


def as_schema(path: Path, version: int) -> None:
    """Make the current file at ``path`` one of schema ``version`` (2 or 3), its rows
    kept: 3 has no ``queue.instance_uuid`` nor ``queue_instance`` (the queue table is
    rebuilt from :data:`QUEUE_3`, each message at its ``seq``); 2 neither, nor
    ``record_liveness``, and its hosts' ``idx`` is empty."""
    assert version in (2, 3), version
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP INDEX queue_instance")
        db.execute("DROP INDEX queue_destination")
        db.execute("ALTER TABLE queue RENAME TO queue_4")
        db.execute(QUEUE_3)
        db.execute("INSERT INTO queue SELECT seq, destination, data FROM queue_4 ORDER BY seq")
        db.execute("DROP TABLE queue_4")
        db.execute("CREATE INDEX queue_destination ON queue (destination, seq)")
        if version == 2:
            db.execute("DROP INDEX record_liveness")
            db.execute("UPDATE record SET idx = '' WHERE kind = 'host'")
        db.execute("UPDATE coldmig_schema SET version = ?", (version,))
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()
