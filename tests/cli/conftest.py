"""What the CLI tests share: a runner, and the CLI's own logger reset after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # `coldmig -v/-q` sets the level of the coldmig_fsm logger and adds a handler.
    logger = logging.getLogger("coldmig_fsm")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
