"""(d) A migrate+confirm cycle on Nova 34's own harness next to ours, in the same run.

The same scenario file (two hosts, one instance, ``cycles`` migrate+confirm pairs) goes
through ``conformance/nova_adapter.py`` in the Nova virtualenv (real API, conductor,
scheduler, placement, computes with Nova's fake driver, SQLite) and through this
library's scenario runner. Nova's time is the adapter's own measure of the steps (set-up
excluded); ours is the wall time of the same steps on the fake cloud in memory.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from coldmig_fsm import load_scenario
from coldmig_fsm.conformance import run_nova
from coldmig_fsm.scenario import build_cloud

from ._common import BenchmarkError, Section, Settings, Table, Verdict, fmt_num, fmt_ratio

__all__ = ["run"]

NOVA_PYTHON = Path(".nova-venv/bin/python")

_HEADER = """\
hosts:
  - {name: host-a, vcpus: 8, ram_mb: 16384, disk_gb: 200}
  - {name: host-b, vcpus: 8, ram_mb: 16384, disk_gb: 200}
flavors:
  - {id: m1.tiny, vcpus: 1, ram_mb: 512, root_gb: 1}
instances:
  - {name: vm1, flavor: m1.tiny, host: host-a}
steps:
"""


def _scenario(cycles: int) -> str:
    steps = "".join(
        "  - {op: migrate, instance: vm1}\n  - {op: confirm_resize, instance: vm1}\n"
        for _ in range(cycles)
    )
    return _HEADER + steps


def _ours(path: Path, reps: int) -> list[float]:
    scenario = load_scenario(path)
    times = []
    for _ in range(reps):
        cloud = build_cloud(scenario)
        start = time.perf_counter()
        for _step in range(len(scenario.steps) // 2):
            if not (cloud.migrate("vm1").wait().ok and cloud.confirm_resize("vm1").wait().ok):
                raise BenchmarkError("a cycle on the fake cloud did not succeed")
        times.append(time.perf_counter() - start)
    return times


def run(settings: Settings) -> Section:
    cycles = 3 if settings.quick else 10
    section = Section(
        title="(d) A migrate+confirm cycle on Nova 34's harness vs ours",
        how=(
            f"One scenario with {cycles} migrate+confirm cycles of one instance between two "
            "hosts, run through `conformance/nova_adapter.py` in the Nova virtualenv "
            "(`make conformance-env`; Nova's functional-test harness in one process) and "
            "through this library's fake cloud in memory. Nova's figure is the adapter's "
            "time for the steps (its set-up excluded); ours is the median of 5 runs of the "
            "same steps."
        ),
    )
    if not NOVA_PYTHON.exists():
        section.notes.append(
            "Not measured in this run: no Nova environment (`make conformance-env` makes it)."
        )
        section.summary.append("not measured (no .nova-venv)")
        return section
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cycles.yaml"
        path.write_text(_scenario(cycles), encoding="utf-8")
        ours = statistics.median(_ours(path, 5)) / cycles
        nova_result = run_nova([path], NOVA_PYTHON)[str(path)]
    steps = nova_result["steps"]
    if not all(step["ok"] for step in steps):
        raise BenchmarkError("a cycle on Nova's harness did not succeed")
    nova = float(nova_result["nova_adapter"]["steps_s"]) / cycles
    ratio = nova / ours
    table = Table(["system", "ms per migrate+confirm cycle", "ratio to ours"])
    table.rows.append(["Nova 34.0.0 functional harness", fmt_num(nova * 1e3, 2), fmt_ratio(ratio)])
    table.rows.append(["coldmig_fsm, fake cloud in memory", fmt_num(ours * 1e3, 3), "1.00x"])
    section.tables.append(table)
    section.verdicts.append(
        Verdict(
            "(d) migrate+confirm cycle, Nova's harness / ours",
            f"{fmt_ratio(ratio)} ({fmt_num(nova * 1e3, 1)} ms vs {fmt_num(ours * 1e3, 3)} ms)",
            "reported (no target)",
            True,
        )
    )
    section.summary.append(f"Nova {nova * 1e3:.1f} ms/cycle, ours {ours * 1e3:.3f} ms/cycle")
    return section
