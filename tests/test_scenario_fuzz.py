"""Mutated scenario files: the runner ends with 0, 1 or 2, never a traceback, within 2 s.

Each example takes one of the shipped scenarios (``tests/scenarios/*.yaml``) and breaks
it: in its parsed tree (a key dropped or misspelt, a value of the wrong type, a huge or
non-finite number, a long string, a list repeated past the limits, a subtree shared so
that the dump holds aliases, an alias bomb, deep nesting), in its text (a line
duplicated, so a key is given twice, or dropped; a number with thousands of digits; a
"billion laughs" block) or in its bytes (random bytes written, inserted, or the file cut
short). ``coldmig scenario run`` runs in process, through the Typer app, on a worker
thread so that a hang fails the example instead of the suite.

The budget is fixed for CI: derandomized, a fixed number of examples, no database.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from coldmig_fsm.cli.app import app

HERE = Path(__file__).resolve().parent
SCENARIOS = sorted((HERE / "scenarios").glob("*.yaml"))
BOUND_S = 2.0
EXAMPLES = 200

Tree = Any
PathInTree = tuple[str | int, ...]


# --- running the CLI in process, bounded ---------------------------------------------------


def run_bounded(path: Path) -> tuple[Result, float]:
    """``coldmig scenario run --compact path`` and the seconds it took (at most BOUND_S)."""
    outcome: list[Result] = []

    def target() -> None:
        outcome.append(CliRunner().invoke(app, ["scenario", "run", "--compact", str(path)]))

    started = time.perf_counter()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(BOUND_S)
    elapsed = time.perf_counter() - started
    assert not worker.is_alive(), f"still running after {BOUND_S} s"
    return outcome[0], elapsed


# --- mutations of the parsed tree ----------------------------------------------------------


def containers(tree: Tree) -> list[PathInTree]:
    """A path to each distinct mapping and list in ``tree``, the root included.

    Each object is visited once: a shared subtree, an alias bomb or a tree that holds
    itself costs what its distinct objects cost.
    """
    found: list[PathInTree] = []
    seen: set[int] = set()

    def visit(node: Tree, at: PathInTree) -> None:
        if not isinstance(node, dict | list) or id(node) in seen:
            return
        seen.add(id(node))
        found.append(at)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            visit(value, (*at, key))

    visit(tree, ())
    return found


def get(tree: Tree, at: PathInTree) -> Tree:
    for part in at:
        tree = tree[part]
    return tree


WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["a", "name", "op"]), st.integers(0, 9), max_size=2),
)
HUGE_NUMBERS = st.sampled_from(
    [-1, 0, 2**31 - 1, 2**31, 2**63, -(2**63), 10**100, 1e308, float("inf"), float("nan")]
)


def alias_bomb(levels: int, width: int) -> list[Any]:
    """``width`` copies of ``width`` copies of ...: the dump writes each level once."""
    bomb: list[Any] = ["lol"] * width
    for _ in range(levels):
        bomb = [bomb] * width
    return bomb


@st.composite
def new_value(draw: st.DrawFn, tree: Tree) -> Any:
    """What a value is replaced by."""
    kind = draw(
        st.sampled_from(["wrong", "huge", "long", "shared", "bomb", "deep", "typo"]),
        label="value kind",
    )
    if kind == "wrong":
        return draw(WRONG_VALUES)
    if kind == "huge":
        return draw(HUGE_NUMBERS)
    if kind == "long":
        return "x" * draw(st.integers(200, 3000))
    if kind == "shared" and containers(tree):
        # The same object twice: the dump writes an anchor and an alias (and an alias
        # inside its own anchor when the object is an ancestor of where it goes).
        return get(tree, draw(st.sampled_from(containers(tree))))
    if kind == "bomb":
        return alias_bomb(draw(st.integers(1, 9)), draw(st.integers(2, 9)))
    if kind == "deep":
        value: Any = "deep"
        for _ in range(draw(st.integers(5, 40))):
            value = [value]
        return value
    return draw(st.sampled_from(["actve", "host-z", "m1.huge", "vm9", "migrat", "", "null"]))


@st.composite
def mutate_tree(draw: st.DrawFn, tree: Tree) -> Tree:
    """``tree`` with one change at a container drawn from it."""
    if not containers(tree):
        return draw(new_value(tree))
    at = draw(st.sampled_from(containers(tree)), label="where")
    target = get(tree, at)
    action = draw(st.sampled_from(["drop", "rename", "replace", "repeat"]), label="action")
    if isinstance(target, dict) and target:
        key = draw(st.sampled_from(sorted(target)))
        if action == "drop":
            del target[key]
        elif action == "rename":
            target[key + draw(st.sampled_from(["s", "_", "x"]))] = target.pop(key)
        elif action == "replace":
            target[key] = draw(new_value(tree))
        else:
            target[draw(st.text(min_size=1, max_size=8))] = target[key]
    elif isinstance(target, list) and target:
        index = draw(st.integers(0, len(target) - 1))
        if action == "drop":
            del target[index]
        elif action == "repeat":  # past the limits of hosts, instances, steps
            target.extend(target * draw(st.integers(1, 300)))
        else:
            target[index] = draw(new_value(tree))
    else:
        return draw(new_value(tree))  # an empty container or the root: replace it all
    return tree


# --- mutations of the text and the bytes ---------------------------------------------------


@st.composite
def mutate_text(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    index = draw(st.integers(0, len(lines) - 1))
    action = draw(st.sampled_from(["duplicate", "drop", "digits", "laughs", "indent"]))
    if action == "duplicate":  # a key given twice, or a list entry twice
        lines.insert(index, lines[index])
    elif action == "drop":
        del lines[index]
    elif action == "digits":
        digits = "9" * draw(st.integers(10, 6000))
        lines[index] = lines[index].replace("1", digits, 1).replace("8", digits, 1)
    elif action == "laughs":
        levels = draw(st.integers(1, 9))
        block = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
        block += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, levels)]
        lines[index:index] = block
    else:
        lines[index] = " " * draw(st.integers(1, 4)) + lines[index]
    return "".join(lines)


@st.composite
def mutate_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    offset = draw(st.integers(0, len(raw)))
    action = draw(st.sampled_from(["write", "insert", "cut"]))
    if action == "cut":
        return raw[:offset]
    junk = draw(st.binary(min_size=1, max_size=8))
    end = offset + len(junk) if action == "write" else offset
    return raw[:offset] + junk + raw[end:]


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    source = draw(st.sampled_from(SCENARIOS), label="scenario")
    raw = source.read_bytes()
    layer = draw(st.sampled_from(["tree", "text", "bytes"]), label="layer")
    count = draw(st.integers(1, 3))
    if layer == "tree":
        tree = yaml.safe_load(raw)
        for _ in range(count):
            tree = draw(mutate_tree(tree))
        return yaml.safe_dump(tree, sort_keys=False).encode()
    if layer == "text":
        text = raw.decode()
        for _ in range(count):
            text = draw(mutate_text(text))
        return text.encode()
    for _ in range(count):
        raw = draw(mutate_bytes(raw))
    return raw


# --- the property ----------------------------------------------------------------------


def test_the_mutations_change_what_they_are_given() -> None:
    # A property over mutated files proves nothing if the mutations are no-ops.
    assert len(SCENARIOS) >= 10
    assert alias_bomb(2, 3) == [[["lol"] * 3] * 3] * 3
    assert "&id001" in yaml.safe_dump({"a": alias_bomb(1, 2)})


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,  # the bound is BOUND_S on the whole run, checked below
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(content=mutated_files())
def test_a_mutated_scenario_exits_0_1_or_2_without_a_traceback(
    tmp_path_factory: Any, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "mutated.yaml"
    path.write_bytes(content)
    result, elapsed = run_bounded(path)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert elapsed < BOUND_S
    if result.exit_code == 2:
        assert result.stdout == ""
        assert " ".join(result.stderr.split()).startswith(f"invalid scenario: {path}: ")
    elif result.exit_code == 1:
        assert "expect did not match" in result.stderr
        json.loads(result.stdout)
    else:
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)
