"""Scenario files through the CLI: outputs, expect blocks, exit codes 0/1/2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coldmig_fsm.harness.scenario import load_scenario, match_expectations, run_scenario

HERE = Path(__file__).resolve().parent
SCENARIOS = sorted((HERE / "scenarios").glob("*.yaml"))
SHARED = HERE.parents[1] / "shared" / "scenarios"


def coldmig(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coldmig_fsm", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 10
    assert all("expect:" in path.read_text() for path in SCENARIOS)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_matches_its_expect_block(path: Path) -> None:
    done = coldmig("scenario", "run", str(path))
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert set(output) >= {
        "steps",
        "instances",
        "migrations",
        "usage",
        "domains",
        "driver_calls",
        "notifications",
        "actions",
    }


def test_every_scenario_matches_its_expect_block_in_process() -> None:
    # The same files without a process each: seconds, for `make mutants`' unit stage.
    for path in SCENARIOS:
        scenario = load_scenario(path)
        assert scenario.expect is not None, path.name
        assert match_expectations(scenario.expect, run_scenario(scenario)) == [], path.name


SHARED_EXAMPLES = (
    "locked-instance.yaml",
    "migrate-confirm.yaml",
    "no-valid-host.yaml",
    "resize-then-resized.yaml",
)


def test_shared_examples_are_the_copies_we_run() -> None:
    # The four examples observed on Nova are copied into tests/scenarios, so that they run
    # even where ../shared is not next to the clone. Whether the copies are still the
    # originals can only be checked beside ../shared: skipped on a developer machine
    # without it, a failure in CI, where the check must run.
    if not SHARED.is_dir():
        message = f"{SHARED} is missing: the shared examples cannot be compared"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: check out the shared directory beside the clone)")
        pytest.skip(message)
    examples = sorted(p.name for p in SHARED.glob("*.yaml"))
    assert examples == list(SHARED_EXAMPLES)
    for name in examples:
        assert (HERE / "scenarios" / name).read_text() == (SHARED / name).read_text(), name


def test_shared_examples_without_the_shared_directory_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "SHARED", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"absent is missing.*CI=true"):
        test_shared_examples_are_the_copies_we_run()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="absent is missing"):
        test_shared_examples_are_the_copies_we_run()


def test_output_shape_of_a_guard_error_and_an_async_error(tmp_path: Path) -> None:
    done = coldmig("scenario", "run", str(HERE / "scenarios" / "no-valid-host.yaml"))
    step = json.loads(done.stdout)["steps"][0]
    assert step["ok"] is False and step["async"] is True
    assert step["error"]["type"] == "NoValidHost"
    done = coldmig("scenario", "run", str(HERE / "scenarios" / "locked-instance.yaml"))
    step = json.loads(done.stdout)["steps"][0]
    assert step["error"]["type"] == "InstanceIsLocked" and "async" not in step


def test_expect_mismatch_exits_1_with_a_diff(tmp_path: Path) -> None:
    text = (HERE / "scenarios" / "migrate-confirm.yaml").read_text()
    bad = tmp_path / "bad-expect.yaml"
    bad.write_text(text.replace("host: host-b, flavor: m1.tiny", "host: host-a, flavor: m1.tiny"))
    done = coldmig("scenario", "run", str(bad))
    assert done.returncode == 1
    assert "instances.vm1.host: expected 'host-a', got 'host-b'" in done.stderr
    assert json.loads(done.stdout)["instances"]["vm1"]["host"] == "host-b"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("hosts: [\n", "line 2"),
        ("hosts: []\nflavors: []\nbogus: 1\n", "bogus, line 3"),
        (
            "hosts:\n  - {name: a, vcpus: 1, ram_mb: 1, disk_gb: 1}\n"
            "flavors:\n  - {id: f, vcpus: 1, ram_mb: 1, root_gb: 1}\n"
            "instances:\n  - {name: vm1, flavor: f, host: a}\n"
            "steps:\n  - {op: teleport, instance: vm1}\n",
            "steps[0].op, line 8: unknown operation 'teleport'",
        ),
        (
            "hosts:\n  - {name: a, vcpus: 1, ram_mb: 1, disk_gb: 1}\n"
            "flavors:\n  - {id: f, vcpus: 1, ram_mb: 1, root_gb: 1}\n"
            "instances:\n  - {name: vm1, flavor: f, host: a}\n"
            "steps:\n  - {op: fault, host: a, call: teleport}\n",
            "steps[0].call, line 8: unknown driver call 'teleport'",
        ),
        (
            "hosts:\n  - {name: a, vcpus: -1, ram_mb: 1, disk_gb: 1}\nflavors: []\n",
            "hosts[0].vcpus, line 2: must be a non-negative integer",
        ),
        (
            "hosts:\n  - {name: a, vcpus: 1, ram_mb: 1, disk_gb: 1}\n"
            "flavors:\n  - {id: f, vcpus: 1, ram_mb: 1, root_gb: 1}\n"
            "instances:\n  - {name: vm1, flavor: nope, host: a}\n",
            "instances[0].flavor, line 6: unknown flavor 'nope'",
        ),
        (
            "config: {max_attempts: 'three'}\nhosts: []\nflavors: []\n",
            "config.max_attempts, line 1: must be int",
        ),
    ],
)
def test_invalid_files_exit_2_naming_file_key_and_line(
    tmp_path: Path, text: str, where: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    done = coldmig("scenario", "run", str(path))
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert str(path) in message and where in message
    assert done.stdout == ""


def test_missing_file_exits_2(tmp_path: Path) -> None:
    done = coldmig("scenario", "run", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2 and "cannot read" in done.stderr
