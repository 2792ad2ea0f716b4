"""What the CLI tests share: a runner, and the CLI's own logger reset after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from coldmig_fsm.cli.app import _StderrHandler


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # `coldmig` adds a stderr handler to the coldmig_fsm logger; -v lowers its level.
    logger = logging.getLogger("coldmig_fsm")
    level = logger.level
    yield
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
