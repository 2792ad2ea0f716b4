"""Clocks: the roles read time only through a :class:`Clock`, so tests can move it."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that moves only when told to; starts at ``start`` (2026-01-01 UTC)."""

    def __init__(self, start: dt.datetime = EPOCH) -> None:
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def set(self, now: dt.datetime) -> None:
        """Put the clock at ``now``, also backwards: for an explorer restoring a snapshot
        of a cloud (:meth:`coldmig_fsm.Cloud.restore`), never for the roles."""
        self._now = now

    def advance(self, seconds: float) -> dt.datetime:
        """Move forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += dt.timedelta(seconds=seconds)
        return self._now
