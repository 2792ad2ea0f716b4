"""What users of a CLI expect: --version, completion, --json, stdin and several files,
`coldmig show`, and help text without typer's type placeholders."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import typer
from typer.testing import CliRunner

from coldmig_fsm.cli.app import app
from coldmig_fsm.harness.failure_table import failure_rows
from coldmig_fsm.harness.scenario import load_scenario, run_scenario
from coldmig_fsm.machine import MACHINE
from coldmig_fsm.verification.introspect import states_markdown

SCENARIOS = Path(__file__).parent.parent / "scenarios"
MIGRATE_CONFIRM = SCENARIOS / "migrate-confirm.yaml"
COLDMIG = Path(sys.executable).with_name("coldmig")


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"coldmig {importlib.metadata.version('coldmig_fsm')}\n"


def test_shell_completion_script() -> None:
    done = subprocess.run(
        [str(COLDMIG), "--show-completion", "bash"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "_COLDMIG_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _coldmig_completion coldmig" in done.stdout


# --- --json ----------------------------------------------------------------------------


def test_states_json_is_the_table_of_states_md(runner: CliRunner) -> None:
    result = runner.invoke(app, ["states", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert len(data["states"]) == len(MACHINE.states)
    assert len(data["transitions"]) == len(MACHINE.rules)
    markdown = states_markdown()
    for state in data["states"]:
        task = "null" if state["task_state"] is None else f"`{state['task_state']}`"
        row = (
            f"| `{state['vm_state']}` | {task} | {', '.join(state['api_actions']) or '—'} | "
            f"{', '.join(state['steps']) or '—'} |"
        )
        assert row in markdown
    first = data["transitions"][0]
    rule = MACHINE.rules[0]
    assert first == {
        "trigger": rule.trigger,
        "role": rule.role.value,
        "from": [s.name for s in rule.sources],
        "to": rule.target.describe(),
        "guards": [repr(g) for g in rule.guards],
        "doc": rule.doc,
    }


def test_failures_json_is_every_row(runner: CliRunner) -> None:
    result = runner.invoke(app, ["failures", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [attrs.asdict(row) for row in failure_rows()]


def test_demo_json_then_show_reads_the_same_database(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite"
    demo = runner.invoke(app, ["demo", "--db", str(db), "--json"])
    assert demo.exit_code == 0, demo.output
    data = json.loads(demo.stdout)  # nothing but the JSON on stdout
    assert data["database"] == str(db)
    assert {i["name"]: i["vm_state"] for i in data["instances"]} == {
        "web-1": "active",
        "db-1": "active",
        "batch-1": "stopped",
    }
    assert [m["status"] for m in data["migrations"]] == [
        "confirmed",
        "reverted",
        "reverted",
        "confirmed",
        "confirmed",
    ]
    assert data["usage"]["compute-3"] == {"vcpus": 1, "ram_mb": 512, "disk_gb": 1}
    assert data["queued_messages"] == 0
    assert [a["action"] for a in data["actions"] if a["instance"] == "web-1"] == [
        "migrate",
        "confirmResize",
        "resize",
        "confirmResize",
    ]

    shown = runner.invoke(app, ["show", "--db", str(db), "--json"])
    assert shown.exit_code == 0, shown.output
    del data["database"]
    assert json.loads(shown.stdout) == data

    tables = runner.invoke(app, ["show", "--db", str(db)])
    assert tables.exit_code == 0
    for title in ("Instances", "Migrations", "Usage per host (claims)", "Instance actions"):
        assert title in tables.stdout
    assert "│ batch-1 │ stopped  │ None       │ shutdown │ compute-3 │ m1.tiny   │" in tables.stdout


# --- scenario run: stdin, several files ------------------------------------------------


def _expected(path: Path) -> dict[str, object]:
    return run_scenario(load_scenario(path))


def test_scenario_from_stdin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["scenario", "run", "-"], input=MIGRATE_CONFIRM.read_text())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == _expected(MIGRATE_CONFIRM)


def test_an_invalid_scenario_on_stdin_is_named_stdin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["scenario", "run", "-"], input="hosts: [\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("invalid scenario: <stdin>: ")
    assert "stdin.yaml" not in result.stderr  # not the temporary copy's name
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_stdin_only_once(runner: CliRunner) -> None:
    result = runner.invoke(app, ["scenario", "run", "-", "-"], input="")
    assert result.exit_code == 2
    assert result.stderr == "error: - (stdin) is given more than once: stdin holds one scenario\n"


def _mismatching(tmp_path: Path) -> Path:
    text = MIGRATE_CONFIRM.read_text().replace(
        "vm1: {vm_state: active, task_state: null, power_state: running, host: host-b",
        "vm1: {vm_state: active, task_state: null, power_state: running, host: host-a",
    )
    path = tmp_path / "wrong-host.yaml"
    path.write_text(text)
    return path


def test_several_files_exit_with_the_worst(runner: CliRunner, tmp_path: Path) -> None:
    wrong = _mismatching(tmp_path)
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("hosts: []\nflavors: []\nbogus: 1\n")

    both = runner.invoke(app, ["scenario", "run", str(MIGRATE_CONFIRM), str(wrong)])
    assert both.exit_code == 1, both.output
    outcomes = json.loads(both.stdout)
    assert outcomes == {
        str(MIGRATE_CONFIRM): _expected(MIGRATE_CONFIRM),
        str(wrong): _expected(wrong),
    }
    assert f"{wrong}: expect did not match" in both.stderr

    worst = runner.invoke(app, ["scenario", "run", str(invalid), str(wrong), str(MIGRATE_CONFIRM)])
    assert worst.exit_code == 2
    assert list(json.loads(worst.stdout)) == [str(wrong), str(MIGRATE_CONFIRM)]
    assert worst.stderr.startswith(f"invalid scenario: {invalid}: bogus, line 3: unknown key")

    good = runner.invoke(
        app,
        ["scenario", "run", "--compact", str(MIGRATE_CONFIRM), "-"],
        input=(MIGRATE_CONFIRM.read_text()),
    )
    assert good.exit_code == 0
    assert good.stdout.count("\n") == 1
    assert list(json.loads(good.stdout)) == [str(MIGRATE_CONFIRM), "<stdin>"]


# --- help ------------------------------------------------------------------------------

COMMANDS = [
    [],
    ["states"],
    ["failures"],
    ["graph"],
    ["show"],
    ["demo"],
    ["migrate"],
    ["confirm"],
    ["revert"],
    ["verify"],
    ["conformance"],
    ["scenario"],
    ["scenario", "run"],
]


def test_every_command_is_listed() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == {c[0] for c in COMMANDS if c}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "coldmig")
def test_help_has_no_type_placeholders(command: list[str], runner: CliRunner) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.stdout
    assert re.findall(r"<[\w\[\], |.]+>", result.stdout) == []
