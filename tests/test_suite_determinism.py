"""A derandomized Hypothesis test generates the same examples whatever ran before it.

Hypothesis draws some values from the literals of the local modules loaded so far, so
the suite loads every module first (``tests/conftest.py``). Here a fresh interpreter
runs the stateful kit against a mutant after the conftest, once as it is and once after
importing the command line (what any CLI test does first): the first failing example is
the same run of actions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """
import sys
sys.path.insert(0, {root!r})
import tests.conftest
{first}
import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from coldmig_fsm.testing import ColdMigrationMachine
from tests.test_mutants import MUTANT_SETTINGS, MUTANTS

cloud = MUTANTS["confirm_releases_wrong_claim"].inject(pytest.MonkeyPatch())
machine = ColdMigrationMachine.for_cloud(cloud)
try:
    run_state_machine_as_test(machine, settings=settings(MUTANT_SETTINGS, phases=[Phase.generate]))
except AssertionError:
    print("\\n".join(machine.last_trace))
"""


def first_failing_example(first: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(root=str(ROOT), first=first)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout.splitlines()


def test_importing_the_cli_first_does_not_change_the_examples() -> None:
    alone = first_failing_example("")
    after_cli = first_failing_example("import coldmig_fsm.cli")
    assert alone, "the mutant was not caught"
    assert after_cli == alone
