"""Every CLI error is one line on stderr (what, why, what to do) and exit 2, never a
traceback; a file that is not a coldmig database is never overwritten."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from coldmig_fsm.cli.app import app

URIS = ["--source", "test:///default", "--dest", "test:///default"]


def _one_line_error(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {message}\n"
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["migrate", "vm", *URIS], "migrate"),
        (["confirm", "vm", *URIS], "confirm"),
        (["revert", "vm", *URIS], "revert"),
        (["demo", "--driver", "libvirt"], "demo --driver libvirt"),
    ],
)
def test_libvirt_commands_without_libvirt_python_say_what_to_install(
    argv: list[str],
    command: str,
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Whether or not libvirt-python is installed here: make its import fail.
    monkeypatch.setitem(sys.modules, "libvirt", None)
    monkeypatch.delitem(sys.modules, "coldmig_fsm.drivers.libvirt.driver", raising=False)
    db = tmp_path / "kept.sqlite"
    result = runner.invoke(app, [*argv, "--db", str(db)])
    _one_line_error(
        result,
        f"coldmig {command} needs libvirt-python, which is not installed: install "
        "coldmig_fsm[libvirt] (a source build: see docs/libvirt.md)",
    )
    assert not db.exists()


def test_demo_db_is_a_directory(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--db", str(tmp_path)])
    _one_line_error(
        result,
        f"--db {tmp_path} is a directory: give the path of a file, such as "
        f"{tmp_path / 'coldmig.sqlite'}",
    )


def test_demo_db_in_a_missing_directory(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "nope" / "demo.sqlite"
    result = runner.invoke(app, ["demo", "--db", str(db)])
    _one_line_error(
        result,
        f"--db {db}: directory {db.parent} does not exist: create it first or choose another path",
    )
    assert not db.parent.exists()


def test_demo_never_overwrites_a_text_file(runner: CliRunner, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    (tmp_path / "notes.txt-wal").write_text("not a log either\n")
    result = runner.invoke(app, ["demo", "--db", str(notes)])
    _one_line_error(
        result,
        f"--db {notes} is not a coldmig database (no SQLite header): it was left "
        "untouched; choose another path",
    )
    assert notes.read_text() == "my notes\n"
    assert (tmp_path / "notes.txt-wal").read_text() == "not a log either\n"


def test_demo_never_overwrites_another_sqlite_database(runner: CliRunner, tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE record (x)")
        conn.execute("INSERT INTO record VALUES (1)")
    conn.close()
    before = other.read_bytes()
    result = runner.invoke(app, ["demo", "--db", str(other)])
    _one_line_error(
        result,
        f"--db {other} is not a coldmig database (an SQLite database without coldmig's "
        "tables: no allocation, counter, log, queue): it was left untouched; choose another path",
    )
    assert other.read_bytes() == before


def test_demo_refuses_an_empty_file(runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    result = runner.invoke(app, ["demo", "--db", str(empty)])
    _one_line_error(
        result,
        f"--db {empty} is not a coldmig database (the file is empty): it was left "
        "untouched; choose another path",
    )


def test_demo_replaces_its_own_database(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite"
    assert runner.invoke(app, ["demo", "--db", str(db)]).exit_code == 0
    again = runner.invoke(app, ["demo", "--db", str(db), "--json"])
    assert again.exit_code == 0, again.output
    with sqlite3.connect(db) as conn:
        # Replaced, not appended to: one run's five migrations.
        assert conn.execute("SELECT COUNT(*) FROM record WHERE kind = 'migration'").fetchone() == (
            5,
        )
    conn.close()


def test_demo_unknown_driver(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--driver", "xen", "--db", str(tmp_path / "d")])
    _one_line_error(result, "--driver 'xen' is not a driver: give fake or libvirt")


def test_show_a_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "gone.sqlite"
    result = runner.invoke(app, ["show", "--db", str(db)])
    _one_line_error(
        result,
        f"--db {db}: no such file: give a database a run left behind (`coldmig demo` "
        "writes coldmig-demo.sqlite)",
    )
    assert not db.exists()


def test_show_a_text_file(runner: CliRunner, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = runner.invoke(app, ["show", "--db", str(notes)])
    _one_line_error(
        result,
        f"--db {notes} is not a coldmig database (no SQLite header): it was left "
        "untouched; choose another path",
    )


def test_verbose_and_quiet_together(runner: CliRunner) -> None:
    result = runner.invoke(app, ["-v", "-q", "states", "--json"])
    _one_line_error(result, "-v and -q contradict each other: give one of them")


# --- usage errors through the real entry point (`coldmig`, i.e. cli.main) ----------------

COLDMIG = Path(sys.executable).with_name("coldmig")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["verify", "--instances", "0"],
            "error: coldmig verify: Invalid value for '--instances': Input should be greater "
            "than or equal to 1 (see `coldmig verify --help`)",
        ),
        (
            ["verify", "--bogus"],
            "error: coldmig verify: No such option: --bogus (see `coldmig verify --help`)",
        ),
        (
            ["scenario", "run"],
            "error: coldmig scenario run: Missing argument 'FILE'. "
            "(see `coldmig scenario run --help`)",
        ),
        (["bogus"], "error: coldmig: No such command 'bogus'. (see `coldmig --help`)"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], line: str) -> None:
    done = subprocess.run(
        [str(COLDMIG), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", line + "\n")


def test_a_command_still_exits_with_its_own_status(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: 1\n", encoding="utf-8")
    done = subprocess.run(
        [str(COLDMIG), "scenario", "run", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    ok = subprocess.run(
        [str(COLDMIG), "states", "--json"], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0
    assert ok.stderr == ""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_interrupted_verify_says_how_far_it_got_in_one_line(workers: str) -> None:
    # Ctrl-C reaches the process group: the command and (with --workers 2) its workers.
    search = subprocess.Popen(
        [str(COLDMIG), "-v", "verify", "--operations", "3", "--faults", "--workers", workers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        start_new_session=True,  # its own process group, which the interrupt goes to
    )
    assert search.stderr is not None
    layers: list[str] = []
    while len(layers) < 4:  # a few layers in: the search is under way
        line = search.stderr.readline()
        assert line, "the search ended before it was interrupted"
        if "explored" in line:
            layers.append(line)
    os.killpg(search.pid, signal.SIGINT)
    out, rest = search.communicate(timeout=60)
    assert search.returncode == 130
    assert out == ""
    assert "Traceback" not in rest
    last = rest.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: interrupted after [\d,]+ states \([\d,]+ transitions, depth \d+\); none of "
        r"them broke an invariant, the rest were not checked",
        last,
    ), last
    with pytest.raises(ProcessLookupError):  # no worker left behind
        os.killpg(search.pid, 0)
