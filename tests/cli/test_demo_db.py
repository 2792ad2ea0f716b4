"""The CLI's other commands: demo (with a real SQLite file), states, graph."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from coldmig_fsm.cli.app import app
from coldmig_fsm.verification.introspect import mermaid, states_markdown

runner = CliRunner()


def test_demo_leaves_a_database_with_the_final_states(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite"
    result = runner.invoke(app, ["demo", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "refused at once, nothing changed: FlavorDiskSmallerThanMinDisk" in result.output
    assert "Instance actions" in result.output
    with sqlite3.connect(db) as conn:
        rows = dict(
            conn.execute(
                "SELECT json_extract(data, '$.name'), json_extract(data, '$.vm_state') "
                "FROM record WHERE kind = 'instance'"
            ).fetchall()
        )
        statuses = [
            r[0]
            for r in conn.execute(
                "SELECT idx FROM record WHERE kind = 'migration' ORDER BY rowid"
            ).fetchall()
        ]
        queued = conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
    assert rows == {"web-1": "active", "db-1": "active", "batch-1": "stopped"}
    assert statuses == ["confirmed", "reverted", "reverted", "confirmed", "confirmed"]
    assert queued == 0


def test_states_and_graph_print_the_generated_documents() -> None:
    result = runner.invoke(app, ["states", "--markdown"])
    assert result.exit_code == 0 and result.output == states_markdown()
    result = runner.invoke(app, ["graph"])
    assert result.exit_code == 0 and result.output == mermaid()
