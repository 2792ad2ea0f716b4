"""cProfile, summarised per unit of work (per step, per cycle) for the report."""

from __future__ import annotations

import cProfile
import pstats
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ._common import Table, fmt_num

__all__ = ["Profile", "profile"]

_Key = tuple[str, int, str]
_RawStats = dict[_Key, tuple[int, int, float, float, Any]]


@dataclass(frozen=True)
class _Row:
    func: str
    where: str
    group: str
    ncalls: int
    tottime: float
    cumtime: float


@dataclass(frozen=True)
class Profile:
    """Every profiled function of a run of ``units`` units of work."""

    rows: tuple[_Row, ...]
    units: int
    unit: str
    total: float  # seconds of profiled time (sum of own times)

    def top(self, key: str, count: int) -> list[_Row]:
        if key == "cumulative":
            return sorted(self.rows, key=lambda r: r.cumtime, reverse=True)[:count]
        return sorted(self.rows, key=lambda r: r.tottime, reverse=True)[:count]

    def table(self, key: str, count: int = 15) -> Table:
        per = self.unit
        table = Table(
            [
                "#",
                "function",
                "where",
                f"calls/{per}",
                f"own µs/{per}",
                f"cumulative µs/{per}",
                "cumulative %",
            ]
        )
        for rank, row in enumerate(self.top(key, count), 1):
            table.rows.append(
                [
                    str(rank),
                    f"`{row.func}`",
                    f"`{row.where}`",
                    fmt_num(row.ncalls / self.units, 1),
                    fmt_num(row.tottime / self.units * 1e6, 1),
                    fmt_num(row.cumtime / self.units * 1e6, 1),
                    fmt_num(100 * row.cumtime / self.total, 1),
                ]
            )
        return table

    def groups(self) -> list[tuple[str, float]]:
        """Own time per package/module, largest first, as fractions of the total."""
        sums: dict[str, float] = defaultdict(float)
        for row in self.rows:
            sums[row.group] += row.tottime
        return sorted(((g, t / self.total) for g, t in sums.items()), key=lambda p: -p[1])

    def group_table(self, count: int = 12) -> Table:
        table = Table(["module (own time)", f"µs/{self.unit}", "share"])
        for group, share in self.groups()[:count]:
            table.rows.append(
                [
                    f"`{group}`",
                    fmt_num(share * self.total / self.units * 1e6, 1),
                    f"{100 * share:.1f} %",
                ]
            )
        return table


def _where(filename: str, lineno: int) -> tuple[str, str]:
    """A short location and the group (package or module) a function belongs to."""
    if filename == "~":
        return "(built-in)", ""
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            rel = path.split(marker, 1)[1]
            parts = rel.split("/")
            group = "/".join(parts[:2]) if parts[0] == "coldmig_fsm" else parts[0]
            return f"{rel}:{lineno}", group.removesuffix(".py")
    name = path.rsplit("/", 1)[-1]
    if "/lib/python" in path:
        return f"{name}:{lineno}", f"stdlib {name.removesuffix('.py')}"
    return f"{name}:{lineno}", name.removesuffix(".py")


def _builtin_group(func: str) -> str:
    for owner in ("sqlite3", "json", "_json"):
        if owner in func:
            return f"built-in {owner.lstrip('_')}"
    return "built-ins (other)"


def _one(work: Callable[[], None]) -> dict[_Key, tuple[int, float, float]]:
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    raw = cast(_RawStats, vars(pstats.Stats(profiler))["stats"])
    return {key: (nc, tt, ct) for key, (_cc, nc, tt, ct, _callers) in raw.items()}


def profile(work: Callable[[], None], units: int, unit: str, repeats: int = 3) -> Profile:
    """Run ``work`` under cProfile ``repeats`` times; keep each function's median times.

    The median over separate runs keeps one slow spell of a shared machine from
    showing up as a hot spot. Rows exclude the benchmark's own frames.
    """
    runs = [_one(work) for _ in range(repeats)]
    keys = {key for run in runs for key in run}
    rows: list[_Row] = []
    for key in keys:
        filename, lineno, func = key
        if "/benchmarks/" in filename.replace("\\", "/") or "Profiler" in func:
            continue
        seen = [run.get(key, (0, 0.0, 0.0)) for run in runs]
        where, group = _where(filename, lineno)
        rows.append(
            _Row(
                func,
                where,
                group or _builtin_group(func),
                int(statistics.median(s[0] for s in seen)),
                statistics.median(s[1] for s in seen),
                statistics.median(s[2] for s in seen),
            )
        )
    total = sum(r.tottime for r in rows)
    return Profile(tuple(rows), units, unit, total)
