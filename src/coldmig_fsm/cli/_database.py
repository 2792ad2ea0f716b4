"""The ``--db`` files of the commands: checked before use, so no other file is overwritten.

A path is used only when it is a coldmig SQLite database (all of :class:`SqliteStore`'s
tables are there) or a new file in an existing directory; anything else fails with exit 2
and is left as it is.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from coldmig_fsm.cli._output import fail
from coldmig_fsm.stores.sqlite import SqliteStore

__all__ = ["check_db", "open_store", "replace_db"]

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


def check_db(db: Path, *, must_exist: bool = False) -> None:
    """Fail (exit 2) unless ``db`` can hold a coldmig store: a coldmig database, or (when
    not ``must_exist``) a new file in an existing directory. Anything else is left as it
    is: no file that is not a coldmig database is ever overwritten."""
    if db.is_dir():
        fail(f"--db {db} is a directory: give the path of a file, such as {db / 'coldmig.sqlite'}")
    if not db.exists():
        if must_exist:
            fail(
                f"--db {db}: no such file: give a database a run left behind "
                "(`coldmig demo` writes coldmig-demo.sqlite)"
            )
        if not db.parent.is_dir():
            fail(
                f"--db {db}: directory {db.parent} does not exist: create it first or "
                "choose another path"
            )
        return
    reason = _not_coldmig(db)
    if reason is not None:
        fail(
            f"--db {db} is not a coldmig database ({reason}): it was left untouched; "
            "choose another path"
        )


def open_store(db: Path, *, must_exist: bool = False) -> SqliteStore:
    """The store in ``db`` once :func:`check_db` let it through (exit 2 otherwise)."""
    check_db(db, must_exist=must_exist)
    try:
        return SqliteStore(db)
    except sqlite3.Error as error:
        fail(f"--db {db}: SQLite cannot open it: {error}: check the file's permissions")


def replace_db(db: Path) -> None:
    """Make room for a new demo database (checked first: only a coldmig one is replaced)."""
    check_db(db)
    try:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    except OSError as error:
        fail(f"--db {db}: cannot replace it: {error.strerror}: choose another path")
