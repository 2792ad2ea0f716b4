"""`make mutants` is configured to run: its tool, its files, its test command (quick; the
campaign itself is not part of `make test`)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

from tests.testing import test_stateful

ROOT = Path(__file__).resolve().parents[1]


def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "scripts" / "mutants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_config_mutates_the_roles_and_the_machine() -> None:
    config = tomllib.loads((ROOT / "scripts" / "mutants.toml").read_text())["cosmic-ray"]
    assert config["module-path"] == [
        "src/coldmig_fsm/roles",
        "src/coldmig_fsm/machine.py",
        "src/coldmig_fsm/guards.py",
    ]
    assert all((ROOT / path).exists() for path in config["module-path"])
    assert config["test-command"] == "python scripts/mutants.py kill"
    assert config["distributor"]["name"] == "local"
    assert float(config["timeout"]) > 0


def test_the_test_command_runs_the_model_checker_and_the_stateful_suite() -> None:
    mutants = runner()
    path, _, name = mutants.STATEFUL_TEST.partition("::")
    assert (ROOT / path).is_file()
    assert hasattr(test_stateful, name)
    for test in mutants.UNIT_TESTS:
        path, _, name = test.partition("::")
        assert (ROOT / path).exists(), test
        assert not name or f"def {name}(" in (ROOT / path).read_text(), test
    assert mutants.STAGES == ("model", "hypothesis", "unit")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mutants.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "{select,kill,report}" in done.stdout
    assert 'kill --stages "$STAGES"' in (ROOT / "scripts" / "mutants.sh").read_text()


def test_annotations_are_found() -> None:
    mutants = runner()
    source = "def f(a: int | None, b=1 | 2) -> list[int]:\n    x: int = a or 0\n"
    spans = mutants.annotation_spans(source)
    assert mutants.in_annotation(spans, (1, 12))  # the | of int | None
    assert not mutants.in_annotation(spans, (1, 27))  # the | of 1 | 2, a default value
    assert mutants.in_annotation(spans, (1, 39))  # list[int]
    assert mutants.in_annotation(spans, (2, 7))  # x: int


def test_make_mutants_installs_its_tool_apart() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("cosmic-ray") for d in project["optional-dependencies"]["mutation"])
    assert not any("cosmic" in d for d in project["dependencies"])
    makefile = (ROOT / "Makefile").read_text()
    assert "\nmutants: $(STAMP)\n" in makefile and "'.[test,mutation]'" in makefile
    script = ROOT / "scripts" / "mutants.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
