"""The mutation campaign of ``make mutants`` (cosmic-ray), in three commands.

``select CONFIG SESSION``: after ``cosmic-ray init``, mark as skipped every mutant that is
not in the campaign: mutations inside a type annotation (never evaluated: every module
says ``from __future__ import annotations``, so they are equivalent by construction),
then one mutant per mutated place (the operator variants of one place, ``<`` to ``<=``,
``>``, ``==``..., stand or fall together), then a seeded random sample of ``--sample``
places.

``kill``: the test command run on each mutant (in the scratch copy, where the mutant is):
the model checker on 2 instances x 2 hosts with faults (one request per trace, then the
default two), then the Hypothesis stateful suite under its CI profile, then the unit tests
of the mutated modules (:data:`UNIT_TESTS`). Exit 1 at the first that fails (the mutant
is caught; ``caught by: ...`` says which), 0 when all pass (it survived). ``--stages``
runs some of them.

``select CONFIG SESSION --survivors-of OLD``: only the mutants that survived in the
session ``OLD`` (the same place, operator and occurrence): to check that new tests catch
them.

``report SESSION``: the totals and every survivor (file, line, operator, diff) as Markdown.
"""

# Imports inside the commands: `kill` must not need cosmic-ray (it runs the kit only), and
# `select`/`report` must not import the (mutated) library.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import ast
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

STATEFUL_TEST = "tests/testing/test_stateful.py::TestColdMigration"
"""The Hypothesis kit's stateful suite, under the profile of tests/testing/conftest.py."""
UNIT_TESTS = (
    "tests/test_machine.py",
    "tests/test_guards.py",
    "tests/test_operations.py",
    "tests/test_api_guards.py",
    "tests/test_scheduler.py",
    "tests/roles",
    "tests/test_happy_paths.py",
    "tests/test_races.py",
    "tests/test_recovery.py",
    "tests/test_periodic.py",
    "tests/test_abort.py",
    "tests/test_failed_move_state.py",
    "tests/test_fault_matrix.py",
    "tests/test_preflight.py",
    "tests/test_failures.py",
    "tests/test_found_by_explore.py",
    "tests/test_scenarios.py::test_every_scenario_matches_its_expect_block_in_process",
)
"""The third stage: the fast tests of the mutated modules (seconds), the scenarios run in
process. What the kit cannot see from its start (a zero-disk flavor, a quota, a bad
table definition) they pin."""
MODEL_CHECK = {"instances": 2, "hosts": 2, "operations": (1, 2), "faults": 1}
"""The model check each mutant meets first: small bounds that take seconds."""


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (start, end) positions (line from 1, column from 0) of every annotation."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for expr in annotations:
            if expr is not None and expr.end_lineno is not None and expr.end_col_offset is not None:
                spans.append(
                    ((expr.lineno, expr.col_offset), (expr.end_lineno, expr.end_col_offset))
                )
    return spans


def in_annotation(
    spans: list[tuple[tuple[int, int], tuple[int, int]]], at: tuple[int, int]
) -> bool:
    return any(start <= at < end for start, end in spans)


def _key(mutation: Any) -> tuple[str, str, int]:
    return (str(mutation.module_path), mutation.operator_name, int(mutation.occurrence))


def survivors_of(session: str) -> set[tuple[str, str, int]]:
    """The mutants (place, operator, occurrence) that survived in ``session``."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    with use_db(session, WorkDB.Mode.open) as db:
        return {
            _key(item.mutations[0])
            for item, result in db.completed_work_items
            if result.test_outcome is TestOutcome.SURVIVED
        }


def select(config: str, session: str, sample: int, seed: int, only: str | None = None) -> None:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    del config  # the session holds the mutants; the config is for symmetry with cr-filter-*
    if only is not None:
        keep = survivors_of(only)
        with use_db(session, WorkDB.Mode.open) as db:
            items = db.pending_work_items
            skipped = [i.job_id for i in items if _key(i.mutations[0]) not in keep]
            db.set_multiple_results(
                skipped,
                WorkResult(output=f"did not survive {only}", worker_outcome=WorkerOutcome.SKIPPED),
            )
        print(f"mutants: {len(items) - len(skipped)} survivors of {only} to run again")
        return
    with use_db(session, WorkDB.Mode.open) as db:
        items = sorted(
            db.pending_work_items,
            key=lambda i: (
                str(i.mutations[0].module_path),
                tuple(i.mutations[0].start_pos),
                i.mutations[0].operator_name,
                i.mutations[0].occurrence,
            ),
        )
        spans: dict[str, Any] = {}
        places: dict[tuple[str, tuple[int, int], tuple[int, int]], list[Any]] = defaultdict(list)
        annotation = []
        for item in items:
            mutation = item.mutations[0]
            path = str(mutation.module_path)
            if path not in spans:
                spans[path] = annotation_spans(Path(path).read_text())
            if in_annotation(spans[path], tuple(mutation.start_pos)):
                annotation.append(item)
                continue
            places[(path, tuple(mutation.start_pos), tuple(mutation.end_pos))].append(item)
        rng = random.Random(seed)
        chosen_places = sorted(places)
        if sample < len(chosen_places):
            chosen_places = sorted(rng.sample(chosen_places, sample))
        chosen = {rng.choice(places[place]).job_id for place in chosen_places}
        for item in annotation:
            db.set_result(
                item.job_id,
                WorkResult(
                    output="equivalent: inside a type annotation",
                    worker_outcome=WorkerOutcome.SKIPPED,
                ),
            )
        skipped = [i.job_id for i in items if i.job_id not in chosen and i not in annotation]
        db.set_multiple_results(
            skipped,
            WorkResult(output="not in the sample", worker_outcome=WorkerOutcome.SKIPPED),
        )
    print(
        f"mutants: {len(items)} generated, {len(annotation)} in annotations (equivalent),"
        f" {len(places)} places, {len(chosen)} sampled (seed {seed})"
    )


def _model_check() -> str | None:
    from coldmig_fsm.verification.model_check import Bounds, initial_cloud, model_check

    instances, hosts = MODEL_CHECK["instances"], MODEL_CHECK["hosts"]
    assert isinstance(instances, int) and isinstance(hosts, int)
    for operations in (1, 2):
        bounds = Bounds(operations=operations, ops_per_instance=operations, faults=1)
        result = model_check(lambda: initial_cloud(instances, hosts), bounds)
        if not result.ok:
            print(result.describe())
            return f"model checker ({operations} request(s))"
    return None


def _pytest(stage: str, tests: list[str]) -> str | None:
    import pytest

    class FirstFailure:
        nodeid: str | None = None

        def pytest_runtest_logreport(self, report: Any) -> None:
            if report.failed and self.nodeid is None:
                self.nodeid = report.nodeid

    seen = FirstFailure()
    code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests], plugins=[seen])
    if code == 0:
        return None
    return f"{stage} ({seen.nodeid or f'pytest exit {code}'})"


STAGES = ("model", "hypothesis", "unit")
"""The kill stages in order: the kit (model checker, Hypothesis suite), then the unit
tests of the mutated modules."""


def kill(stages: tuple[str, ...] = STAGES) -> int:
    runs = {
        "model": _model_check,
        "hypothesis": lambda: _pytest("Hypothesis suite", [STATEFUL_TEST]),
        "unit": lambda: _pytest("unit tests", list(UNIT_TESTS)),
    }
    for stage in stages:
        caught = runs[stage]()
        if caught is not None:
            print(f"caught by: {caught}")
            return 1
    return 0


def _stage(output: str) -> str:
    """Which stage caught a mutant, from its test command's output."""
    for line in output.splitlines():
        if line.startswith("caught by: "):
            return line.removeprefix("caught by: ").split(" (")[0]
    return "a crash of the test command"


def report(session: str) -> str:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    with use_db(session, WorkDB.Mode.open) as db:
        done = db.completed_work_items
    outcomes: Counter[str] = Counter()
    survivors = []
    for item, result in done:
        if result.worker_outcome is WorkerOutcome.SKIPPED:
            outcomes[f"skipped: {result.output}"] += 1
            continue
        if result.test_outcome is TestOutcome.SURVIVED:
            survivors.append((item, result))
        outcome = "none" if result.test_outcome is None else result.test_outcome.value
        if result.output == "timeout":
            outcome += " (timeout)"
        elif result.test_outcome is TestOutcome.KILLED:
            outcome += f" by {_stage(result.output or '')}"
        outcomes[outcome] += 1
    ran = sum(n for k, n in outcomes.items() if not k.startswith("skipped"))
    killed = sum(n for k, n in outcomes.items() if k.startswith("killed"))
    lines = ["| outcome | mutants |", "|---|---:|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(outcomes.items())]
    lines += ["", f"Caught: {killed} of {ran} run ({100 * killed / max(ran, 1):.1f} %).", ""]
    for item, result in sorted(
        survivors,
        key=lambda s: (str(s[0].mutations[0].module_path), tuple(s[0].mutations[0].start_pos)),
    ):
        mutation = item.mutations[0]
        lines.append(
            f"### `{mutation.module_path}:{mutation.start_pos[0]}` {mutation.operator_name}"
        )
        lines += ["", "```diff", (result.diff or "").strip(), "```", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    chosen = commands.add_parser("select", help="skip the mutants outside the campaign")
    chosen.add_argument("config")
    chosen.add_argument("session")
    chosen.add_argument("--sample", type=int, default=100, help="places to mutate")
    chosen.add_argument("--seed", type=int, default=14)
    chosen.add_argument("--survivors-of", metavar="OLD_SESSION", help="run only its survivors")
    killing = commands.add_parser("kill", help="the test command: exit 1 when it is caught")
    killing.add_argument(
        "--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}"
    )
    reported = commands.add_parser("report", help="the campaign's results as Markdown")
    reported.add_argument("session")
    args = parser.parse_args(argv)
    if args.command == "select":
        select(args.config, args.session, args.sample, args.seed, args.survivors_of)
        return 0
    if args.command == "kill":
        return kill(tuple(args.stages.split(",")))
    print(report(args.session), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
