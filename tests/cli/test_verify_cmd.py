"""`coldmig verify`: validated options, every bound exposed, --max-states, --json."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from coldmig_fsm.cli import verify as verify_cmd
from coldmig_fsm.cli.app import app
from coldmig_fsm.harness.scenario import load_scenario, match_expectations, run_scenario
from coldmig_fsm.verification.model_check import (
    Bounds,
    SearchProgress,
    initial_cloud,
    model_check,
)
from tests.test_mutants import confirm_ignores_power_state

SMALL = ["verify", "--instances", "1", "--hosts", "2"]


def _explored(runner: CliRunner, *options: str) -> int:
    """States explored; exit 1 (a counterexample) ends the search early but still counts."""
    result = runner.invoke(app, [*SMALL, *options, "--json"])
    data = json.loads(result.stdout)
    assert (result.exit_code, data["result"]) in ((0, "ok"), (1, "counterexample"))
    states: int = data["states"]
    return states


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--instances", "0", "Invalid value for '--instances'"),
        ("--instances", "-1", "Invalid value for '--instances'"),
        ("--hosts", "0", "Invalid value for '--hosts'"),
        ("--hosts", "27", "Invalid value for '--hosts'"),
        ("--operations", "0", "Invalid value for '--operations'"),
        ("--ops-per-instance", "0", "Invalid value for '--ops-per-instance'"),
        ("--max-states", "0", "Invalid value for '--max-states'"),
    ],
)
def test_out_of_range_options_are_refused(
    option: str, value: str, message: str, runner: CliRunner
) -> None:
    result = runner.invoke(app, ["verify", option, value])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "no invariant violated" not in result.output
    assert "Traceback" not in result.output


def test_fault_budget_below_one_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(app, ["verify", "--faults", "--fault-budget", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--fault-budget'" in result.stderr


def test_fault_budget_without_faults_is_an_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["verify", "--fault-budget", "2"])
    assert result.exit_code == 2
    assert (
        result.stderr == "error: --fault-budget needs --faults: without it no fault is injected\n"
    )
    assert result.stdout == ""


def test_more_operations_explore_more_states_unless_capped_per_instance(
    runner: CliRunner,
) -> None:
    two = _explored(runner, "--operations", "2")
    # The per-instance cap defaults to --operations, so three requests reach further ...
    assert _explored(runner, "--operations", "3") > two
    # ... and capping the one instance at two requests gives back the two-request space.
    assert _explored(runner, "--operations", "3", "--ops-per-instance", "2") == two


def test_no_races_explores_fewer_transitions(runner: CliRunner) -> None:
    with_races = json.loads(runner.invoke(app, [*SMALL, "--json"]).stdout)
    without = json.loads(runner.invoke(app, [*SMALL, "--no-races", "--json"]).stdout)
    assert without["bounds"]["races"] is False
    assert without["transitions"] < with_races["transitions"]


def test_the_table_states_every_bound(runner: CliRunner) -> None:
    result = runner.invoke(app, [*SMALL, "--operations", "3", "--ops-per-instance", "2"])
    assert result.exit_code == 0, result.output
    assert "│ 3 requests (2 per instance), races, │" in result.stdout
    assert "│ no faults " in result.stdout
    assert result.stdout.endswith(
        "no invariant violated in any reachable state, and every state can settle\n"
    )
    assert "search: engine snapshot, symmetry reduction, 1 worker(s), " in result.stdout
    assert "64-bit fingerprints: probability of a collision <= " in result.stdout
    # An unreachable request budget is said, not hidden.
    assert result.stderr == (
        "WARNING coldmig_fsm.cli.app: at most 2 requests per trace are reachable: "
        "1 instance(s) x 2 per instance\n"
    )


def test_max_states_reports_an_incomplete_search(runner: CliRunner) -> None:
    result = runner.invoke(app, [*SMALL, "--max-states", "20"])
    assert result.exit_code == 3, result.output
    assert result.stdout.endswith(
        "incomplete: bound reached: --max-states 20 stopped the search; no invariant "
        "violated in the 20 states explored, the rest were not checked\n"
    )
    assert "no invariant violated in any reachable state" not in result.stdout


def test_max_states_json(runner: CliRunner) -> None:
    result = runner.invoke(app, [*SMALL, "--max-states", "20", "--json"])
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert (data["result"], data["complete"], data["states"]) == ("incomplete", False, 20)
    assert data["bounds"] == {
        "operations": 2,
        "ops_per_instance": 2,
        "faults": 0,
        "races": True,
        "max_states": 20,
    }
    assert (data["counterexample"], data["violations"]) == (None, [])


def test_json_with_faults(runner: CliRunner) -> None:
    result = runner.invoke(app, [*SMALL, "--faults", "--fault-budget", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["result"] == "ok"
    assert data["bounds"]["faults"] == 1
    assert data["states"] > _explored(runner)


def test_verbose_logs_each_layer(runner: CliRunner) -> None:
    result = runner.invoke(app, ["-v", *SMALL, "--json"])
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    # One line as each breadth-first layer is done: as many as the search is deep.
    assert len(lines) == json.loads(result.stdout)["depth"]
    assert all(
        re.fullmatch(r"INFO coldmig_fsm.cli.app: explored \d+ states, \d+ transitions", line)
        for line in lines
    )


def test_quiet_hides_warnings(runner: CliRunner) -> None:
    argv = [*SMALL, "--operations", "3", "--ops-per-instance", "2", "--json"]
    assert "WARNING" in runner.invoke(app, argv).stderr
    assert runner.invoke(app, ["-q", *argv]).stderr == ""


@pytest.mark.parametrize(
    "bounds",
    [
        {"operations": -1},
        {"ops_per_instance": -1},
        {"faults": -1},
        {"max_states": 0},
    ],
)
def test_bounds_refuse_negative_budgets(bounds: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=f"'{next(iter(bounds))}' must be >= "):
        Bounds(**bounds)  # type: ignore[arg-type]


def test_bounds_allow_one_instance_every_request_unless_told() -> None:
    # As `coldmig verify --operations N` (its --ops-per-instance defaults to N).
    assert (Bounds().operations, Bounds().ops_per_instance) == (2, 2)
    assert Bounds(operations=3).ops_per_instance == 3
    assert Bounds(operations=3, ops_per_instance=1).ops_per_instance == 1
    assert Bounds(operations=0).ops_per_instance == 0


def test_progress_is_reported_once_per_layer() -> None:
    seen: list[tuple[int, int]] = []
    result = model_check(
        lambda: initial_cloud(1, 2), Bounds(), faults=False, progress=lambda *a: seen.append(a)
    )
    # One call as each layer below the first starts; figures only grow; the last layer
    # finds no new state (else there would be a deeper one).
    assert len(seen) == result.depth
    assert seen == sorted(seen) and seen[-1][0] == result.states


def test_emit_scenario_without_a_counterexample_writes_nothing(
    runner: CliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "found.yaml"
    result = runner.invoke(app, [*SMALL, "--emit-scenario", str(target)])
    assert result.exit_code == 0, result.output
    assert f"no counterexample: {target} not written" in result.stdout
    assert not target.exists()
    result = runner.invoke(app, [*SMALL, "--emit-scenario", str(target), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["scenario"] is None
    assert not target.exists()


def test_emit_scenario_writes_the_counterexample(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    confirm_ignores_power_state(monkeypatch)  # a mutant: confirm always ends running
    target = tmp_path / "found.yaml"
    options = ["verify", "--instances", "2", "--hosts", "2", "--emit-scenario", str(target)]
    result = runner.invoke(app, [*options, "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["scenario"] == str(target)
    scenario = load_scenario(target)
    assert scenario.expect == {"violations": []}
    assert [s["op"] for s in scenario.steps][-1] == "advance_clock"
    assert match_expectations(scenario.expect, run_scenario(scenario)) != []
    monkeypatch.undo()
    assert match_expectations(scenario.expect, run_scenario(scenario)) == []
    target.unlink()
    confirm_ignores_power_state(monkeypatch)
    result = runner.invoke(app, options)
    assert result.exit_code == 1
    assert f"scenario written to {target}" in result.stdout
    # Memory is measured at the end of a complete search only: not shown as 0 here.
    assert "bytes per visited state" not in result.stdout
    assert target.exists()


def test_json_reports_the_search(runner: CliRunner) -> None:
    result = runner.invoke(app, [*SMALL, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["engine"], data["symmetry"], data["workers"]) == ("snapshot", True, 1)
    assert data["liveness_checked"] and data["failed"] is None
    assert data["fingerprint_bits"] == 64
    assert 0 < data["collision_probability"] < 1e-12
    assert 0 < data["bytes_per_state"] <= 200
    by_kind = {t["kind"]: (t["transitions"], t["states"]) for t in data["by_action"]}
    assert sum(t for t, _ in by_kind.values()) == data["transitions"]
    assert sum(s for _, s in by_kind.values()) == data["states"] - 1
    assert by_kind["race"][1] == 0


def test_by_action_shows_where_the_transitions_went(runner: CliRunner) -> None:
    result = runner.invoke(app, [*SMALL, "--faults", "--by-action"])
    assert result.exit_code == 0, result.output
    assert "by action" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "│ step: hang" in line]
    assert len(rows) == 1
    assert [cell.strip() for cell in rows[0].split("│")[1:-1]] == ["step: hang", "48", "4.8 %", "0"]
    cut = runner.invoke(app, [*SMALL, "--by-action", "--max-states", "10"])
    assert cut.exit_code == 3
    assert "by action: counted for a complete search of the snapshot engine only" in cut.stdout


def test_workers_symmetry_and_the_reference_engine(runner: CliRunner) -> None:
    def run(*options: str) -> dict[str, object]:
        result = runner.invoke(app, [*SMALL, "--faults", *options, "--json"])
        assert result.exit_code == 0, result.output
        data: dict[str, object] = json.loads(result.stdout)
        return data

    reduced = run()
    assert run("--workers", "2")["states"] == reduced["states"]
    full = run("--no-symmetry")
    reference = run("--engine", "reference")
    assert (reference["states"], reference["transitions"]) == (full["states"], full["transitions"])
    assert (reference["symmetry"], reference["liveness_checked"]) == (False, False)
    assert reference["fingerprint_bits"] == 0
    assert run("--no-liveness")["liveness_checked"] is False


def test_the_reference_engine_runs_in_one_process(runner: CliRunner) -> None:
    result = runner.invoke(app, [*SMALL, "--engine", "reference", "--workers", "2"])
    assert result.exit_code == 2
    assert "--engine reference runs in one process" in result.stderr


def test_a_long_search_shows_its_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(verify_cmd, "err", Console(file=screen, force_terminal=True, width=120))
    monkeypatch.setattr(verify_cmd, "_QUIET_SECONDS", 0.0)
    display = verify_cmd._ProgressDisplay()
    display(SearchProgress(states=1234, transitions=5000, frontier=321, depth=4, seconds=2.0))
    display(SearchProgress(states=2345, transitions=9000, frontier=432, depth=5, seconds=3.0))
    display.stop()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "2,345 states, 432 in the frontier, depth 5, 782 states/s" in shown


def test_a_short_search_or_no_terminal_shows_none(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(verify_cmd, "err", Console(file=screen, force_terminal=True))
    display = verify_cmd._ProgressDisplay()  # the first seconds are quiet
    display(SearchProgress(states=1, transitions=0, frontier=1, depth=1, seconds=0.1))
    display.stop()
    assert screen.getvalue() == ""
