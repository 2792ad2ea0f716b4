"""Every code block of README.md and docs/*.md runs as written.

A reader copies the blocks of one page in order into one interpreter, so the blocks of a
file run in order in one namespace, in a temporary working directory:

- ```` ```python ```` blocks are executed (compiled under the Markdown file's name with
  their own line numbers, so a traceback points into the page);
- ```` ```yaml ```` and ```` ```json ```` blocks must parse; a YAML block whose first line
  is a comment naming a file (``# vm1.yaml``) is also written to that file, so that a
  later shell block can use it;
- in ```` ```sh ```` blocks every ``coldmig ...`` command (``.venv/bin/coldmig`` too) is run
  with this interpreter's ``coldmig`` and must exit 0. Other commands (``make ...``,
  ``scripts/...``, ``apt-get``, ``pip``) are not run: they set the machine up, and ``make
  test`` is what runs this test.

A block that cannot run here (it needs real hosts, the Nova environment, a placeholder
such as ``FILE...``) is preceded by the marker ``<!-- not-run: why -->`` on the line just
before its fence; the marker needs a reason, and a marker that is not followed by a code
block is an error. A failure names the file and the line of the block.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_TIMEOUT_S = 300

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[^\s`]*)")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
_FILE_HEADER = re.compile(r"^#\s*(?P<name>[\w.-]+\.(?:ya?ml|json))\s*$")
_SHELL = {"sh", "bash", "shell", "console"}
_COLDMIG = {"coldmig", ".venv/bin/coldmig"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the marker's reason

    @property
    def where(self) -> str:
        name = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path``, in order.

    Raises:
        ValueError: an unclosed fence, a ``not-run`` marker without a reason, or one not
            followed by a code block.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    pending_marker: tuple[int, str] | None = None
    number = 0
    while number < len(lines):
        text = lines[number]
        marker = _NOT_RUN.match(text)
        if marker is not None:
            reason = marker.group("reason").strip()
            if not reason:
                raise ValueError(f"{path.name}:{number + 1}: not-run marker without a reason")
            pending_marker = (number + 1, reason)
            number += 1
            continue
        fence = _FENCE.match(text)
        if fence is None:
            if pending_marker is not None and text.strip():
                raise ValueError(
                    f"{path.name}:{pending_marker[0]}: not-run marker not followed by a code block"
                )
            number += 1
            continue
        indent, mark = fence.group("indent"), fence.group("fence")
        body: list[str] = []
        end = number + 1
        while end < len(lines) and not lines[end].strip().startswith(mark):
            line = lines[end]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            end += 1
        if end == len(lines):
            raise ValueError(f"{path.name}:{number + 1}: code block never closed")
        found.append(
            Block(
                path,
                number + 1,
                fence.group("lang").lower(),
                "\n".join(body) + "\n",
                pending_marker[1] if pending_marker else None,
            )
        )
        pending_marker = None
        number = end + 1
    if pending_marker is not None:
        raise ValueError(
            f"{path.name}:{pending_marker[0]}: not-run marker not followed by a code block"
        )
    return found


def shell_commands(code: str) -> list[list[str]]:
    """The ``coldmig`` commands of a shell block, as argument lists (``coldmig`` first)."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] in _COLDMIG:
            commands.append(["coldmig", *words[1:]])
    return commands


def _coldmig() -> list[str]:
    script = Path(sys.executable).with_name("coldmig")
    return [str(script)] if script.exists() else [sys.executable, "-m", "coldmig_fsm"]


def _run_python(block: Block, namespace: dict[str, Any]) -> None:
    # Leading newlines keep the page's own line numbers in tracebacks.
    code = compile("\n" * block.line + block.code, str(block.path), "exec")
    exec(code, namespace)


# A command whose arguments name no file gives the same result wherever it is shown
# (``coldmig verify ...`` is on two pages and takes seconds): run it once per session.
_OUTCOMES: dict[tuple[str, ...], tuple[int, str]] = {}


def _run_coldmig(args: list[str], workdir: Path) -> tuple[int, str]:
    key = tuple(args)
    cacheable = not any((workdir / arg).exists() for arg in args if not arg.startswith("-"))
    if cacheable and key in _OUTCOMES:
        return _OUTCOMES[key]
    done = subprocess.run(
        [*_coldmig(), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines = [line.strip(" │╭╮╰╯─") for line in (done.stderr or done.stdout).splitlines()]
    outcome = (done.returncode, " / ".join([line for line in lines if line][-4:]))
    if cacheable:
        _OUTCOMES[key] = outcome
    return outcome


def _run_shell(block: Block, workdir: Path) -> None:
    for command in shell_commands(block.code):
        status, tail = _run_coldmig(command[1:], workdir)
        if status != 0:
            raise AssertionError(f"`{shlex.join(command)}` exited {status}: {tail}")


def _check_data(block: Block, workdir: Path) -> None:
    if block.lang == "json":
        json.loads(block.code)
        return
    yaml.safe_load(block.code)
    first = block.code.splitlines()[0] if block.code.strip() else ""
    header = _FILE_HEADER.match(first)
    if header is not None:
        target = workdir / header.group("name")
        if target.is_symlink():  # a file of the repository: write beside it, never into it
            target.unlink()
        target.write_text(block.code, encoding="utf-8")


def _workdir(tmp_path: Path) -> Path:
    """A directory that looks like the repository (so ``tests/scenarios/...`` and
    ``docs/...`` resolve) but where whatever a block writes stays temporary."""
    for entry in ROOT.iterdir():
        if entry.name in {".git", ".venv", ".nova-venv"} or entry.name.startswith("coldmig-"):
            continue
        (tmp_path / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return tmp_path


def run_page(path: Path, workdir: Path) -> list[str]:
    """Run every block of ``path`` in order; return one message per failed block."""
    failures = []
    namespace: dict[str, Any] = {"__name__": f"docs_example_{path.stem}"}
    for block in blocks(path):
        if block.not_run is not None:
            continue
        try:
            if block.lang == "python":
                _run_python(block, namespace)
            elif block.lang in _SHELL:
                _run_shell(block, workdir)
            elif block.lang in {"yaml", "yml", "json"}:
                _check_data(block, workdir)
        except Exception as error:  # any failure of a block is reported with its place
            frames = [
                f"line {frame.lineno}"
                for frame in traceback.extract_tb(error.__traceback__)
                if frame.filename == str(path)
            ]
            at = f" ({', '.join(frames)})" if frames else ""
            failures.append(f"{block.where}{at}: {type(error).__name__}: {error}")
    return failures


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_code_block_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = _workdir(tmp_path)
    monkeypatch.chdir(workdir)
    failures = run_page(path, workdir)
    assert not failures, "\n".join(failures)


# -- the checker itself -------------------------------------------------------------------


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_blocks_keep_language_line_and_marker(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "text\n\n```python\nx = 1\n```\n\n<!-- not-run: needs real hosts -->\n"
        "```sh\ncoldmig migrate a\n```\n\n- item\n\n  ```yaml\n  a: 1\n  ```\n",
    )
    found = blocks(page)
    assert [(b.lang, b.line, b.code, b.not_run) for b in found] == [
        ("python", 3, "x = 1\n", None),
        ("sh", 8, "coldmig migrate a\n", "needs real hosts"),
        ("yaml", 14, "a: 1\n", None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- not-run: -->\n```sh\nls\n```\n", "without a reason"),
        ("<!-- not-run: why -->\nsome text\n", "not followed by a code block"),
        ("<!-- not-run: why -->\n", "not followed by a code block"),
        ("```python\nx = 1\n", "never closed"),
    ],
)
def test_bad_pages_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        blocks(_page(tmp_path, text))


def test_shell_commands_are_the_coldmig_lines() -> None:
    code = (
        "make demo   # not run\n"
        ".venv/bin/coldmig scenario run vm1.yaml   # JSON on stdout\n"
        "coldmig verify --instances 2 \\\n    --faults\n"
        "scripts/libvirt-hosts.sh start 2\n"
    )
    assert shell_commands(code) == [
        ["coldmig", "scenario", "run", "vm1.yaml"],
        ["coldmig", "verify", "--instances", "2", "--faults"],
    ]


def test_a_failing_block_is_named_with_its_line(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "```python\nvalue = 41\n```\n\n```python\nassert value == 41\n"
        "assert value + 1 == 41, 'off by one'\n```\n\n```sh\ncoldmig no-such-command\n```\n"
        "\n```yaml\n# a.yaml\nkey: [1\n```\n",
    )
    failures = run_page(page, tmp_path)
    assert len(failures) == 3
    python, shell, data = failures
    assert python == f"{page}:5 (line 7): AssertionError: off by one"
    assert shell.startswith(f"{page}:10: AssertionError: `coldmig no-such-command` exited 2")
    assert data.startswith(f"{page}:14: ParserError")


def test_a_named_yaml_block_is_written_for_the_shell_blocks(tmp_path: Path) -> None:
    scenario = (ROOT / "tests" / "scenarios").glob("*.yaml")
    source = next(iter(sorted(scenario))).read_text(encoding="utf-8")
    body = "\n".join(line for line in source.splitlines() if not line.startswith("#"))
    page = _page(
        tmp_path,
        f"```yaml\n# mine.yaml\n{body}\n```\n\n```sh\ncoldmig scenario run mine.yaml\n```\n",
    )
    assert run_page(page, tmp_path) == []
    assert (tmp_path / "mine.yaml").exists()
