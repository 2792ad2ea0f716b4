"""What every benchmark shares: the run settings, timing helpers and report pieces.

The benchmarks only use the standard library and the package. Every figure of a run is
measured in that run, and every ratio compares two figures of the same run, so a slow or
busy machine changes the numbers but much less the ratios. Each timing is repeated; the
report shows the minimum and the median, and verdicts use the median.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "FULL",
    "QUICK",
    "BenchmarkError",
    "Section",
    "Settings",
    "Spread",
    "Table",
    "Verdict",
    "fmt_bytes",
    "fmt_int",
    "fmt_num",
    "fmt_ratio",
    "gc_paused",
    "spread",
]


class BenchmarkError(RuntimeError):
    """A benchmark saw a wrong result (a refused step, a request that did not succeed)."""


@dataclass(frozen=True)
class Settings:
    """Sizes of one run. :data:`FULL` is ``make bench``; :data:`QUICK` a smoke test."""

    quick: bool
    # (a) one guarded step
    step_batch: int  # steps per timed batch
    step_reps: int  # timed batches per variant
    # (b) tracking many instances
    headline_n: int  # the "100,000 instances"
    ours_sizes: tuple[int, ...]
    raw_sizes: tuple[int, ...]  # add_model timings
    raw_memory_sizes: tuple[int, ...]  # add_model under tracemalloc (slow: kept small)
    track_reps: int  # repetitions for sizes up to 5,000 (larger sizes: once)
    raw_limit_s: float  # run add_model at headline_n only when predicted below this
    # (c) migrate+confirm cycles
    cycle_warmup: int
    cycle_seconds: float  # minimum length of one measured window
    cycle_reps: int
    profile_cycles: int
    profile_sqlite_cycles: int


FULL = Settings(
    quick=False,
    step_batch=20_000,
    step_reps=9,
    headline_n=100_000,
    ours_sizes=(1_000, 5_000, 10_000, 20_000, 100_000),
    raw_sizes=(1_000, 5_000, 10_000, 20_000),
    raw_memory_sizes=(1_000, 5_000),
    track_reps=3,
    raw_limit_s=60.0,
    cycle_warmup=50,
    cycle_seconds=2.0,
    cycle_reps=3,
    profile_cycles=500,
    profile_sqlite_cycles=200,
)

QUICK = Settings(
    quick=True,
    step_batch=2_000,
    step_reps=3,
    headline_n=5_000,
    ours_sizes=(1_000, 5_000),
    raw_sizes=(500, 1_000, 2_000),
    raw_memory_sizes=(500,),
    track_reps=1,
    raw_limit_s=0.0,
    cycle_warmup=5,
    cycle_seconds=0.25,
    cycle_reps=2,
    profile_cycles=40,
    profile_sqlite_cycles=20,
)


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one figure."""

    values: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def max(self) -> float:
        return max(self.values)


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("no measurement")
    return Spread(tuple(values))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the cyclic GC off for a micro-benchmark (as ``timeit`` does)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- report pieces ------------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""

    def markdown(self) -> str:
        lines = []
        if self.caption:
            lines += [self.caption, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join(self._rule(i) for i in range(len(self.headers))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)

    def _rule(self, column: int) -> str:
        """Right-align a column whose cells all start with a number."""
        cells = [row[column] for row in self.rows if column < len(row) and row[column]]
        numeric = bool(cells) and all(c[0].isdigit() for c in cells)
        return "---:" if numeric else "---"


@dataclass(frozen=True)
class Verdict:
    """One target of the issue and how this run did against it."""

    name: str
    measured: str
    target: str
    passed: bool

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "MISS"


@dataclass
class Section:
    """One benchmark's part of the report."""

    title: str
    how: str
    tables: list[Table] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)  # (summary, markdown body)
    summary: list[str] = field(default_factory=list)  # extra lines for stdout

    def verdict_table(self) -> Table:
        table = Table(["target", "measured (median)", "target", "result"])
        for v in self.verdicts:
            table.rows.append([v.name, v.measured, v.target, f"**{v.status}**"])
        return table


# -- formatting ---------------------------------------------------------------------------


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_num(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_bytes(value: float) -> str:
    if abs(value) >= 1024 * 1024:
        return f"{value / (1024 * 1024):,.1f} MiB"
    if abs(value) >= 10 * 1024:
        return f"{value / 1024:,.1f} KiB"
    return f"{value:,.0f} B"
