"""`make mutants` is configured to run: its tool, its files, its test command (quick; the
campaign itself is not part of `make test`)."""

from __future__ import annotations

import ast
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


def _local_imports(root: Path) -> set[str]:
    """The top-level names the test files import that are folders or modules of the tree."""
    names: set[str] = set()
    for path in (root / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return {n for n in names if (root / n).is_dir() or (root / f"{n}.py").is_file()}


def test_the_scratch_copy_holds_everything_the_tests_import() -> None:
    # The campaign runs in a copy of the tree; a folder the tests import but the copy
    # lacks makes the baseline fail before any mutant runs (benchmarks/ once did).
    script = (ROOT / "scripts" / "mutants.sh").read_text()
    line = next(x for x in script.splitlines() if x.startswith("COPY="))
    copied = set(line.removeprefix("COPY=").strip('"').split())
    imported = _local_imports(ROOT)
    assert imported == {"benchmarks", "tests"}
    assert imported | {"src", "pyproject.toml"} <= copied
    assert all((ROOT / path).exists() for path in copied)
    assert 'for path in $COPY; do cp -R "$ROOT/$path" "$WORK/"; done' in script
