"""``make explore``'s model check: 3 instances on 3 hosts, its figures into the docs.

Runs :func:`~coldmig_fsm.verification.model_check.model_check` on
``initial_cloud(3, 3)`` with the default bounds, without and with faults (symmetry
reduction and liveness on, on two workers), and replaces the part of
``docs/verification.md`` between ``<!-- explore:begin -->`` and ``<!-- explore:end -->``
with a table of what it found. Exit 1 if a property is violated (the table says which).

    .venv/bin/python -m benchmarks.explore_model_check --output docs/verification.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from coldmig_fsm.verification.model_check import Bounds, CheckResult, initial_cloud, model_check

__all__ = ["main"]

BEGIN = "<!-- explore:begin -->"
END = "<!-- explore:end -->"
INSTANCES, HOSTS = 3, 3


def _row(faults: bool, result: CheckResult) -> str:
    if result.ok:
        verdict = "ok, every state can settle" if result.liveness_checked else "ok"
    else:
        verdict = f"{result.failed} violated ({len(result.counterexample or ())} actions)"
    return (
        f"| {INSTANCES} x {HOSTS} | {'yes' if faults else 'no'} | {result.states:,} | "
        f"{result.transitions:,} | {result.depth} | {result.seconds:,.1f} | "
        f"{result.states_per_second:,.0f} | {result.bytes_per_state:.0f} | "
        f"{result.collision_probability:.0e} | {verdict} |"
    )


def report(results: Sequence[tuple[bool, CheckResult]], workers: int, load: float) -> str:
    """The Markdown that goes between the markers (``load``: the load average before)."""
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    lines = [
        f"Run of {day} (load average {load:.1f} on {os.cpu_count()} cores before it), "
        "default bounds (2 requests, 2 per instance, races; 1 fault), "
        f"symmetry reduction and liveness on, {workers} workers:",
        "",
        "| instances x hosts | faults | states | transitions | depth | seconds | states/s "
        "| bytes/state | collision bound | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *(_row(faults, result) for faults, result in results),
    ]
    for faults, result in results:
        if not result.ok:
            lines += ["", f"Counterexample ({'faults' if faults else 'no faults'}):", ""]
            lines += [f"{i}. {a}" for i, a in enumerate(result.counterexample or (), 1)]
            lines += [f"- violates: {v}" for v in result.violations]
    return "\n".join(lines)


def splice(document: str, body: str) -> str:
    """``document`` with the text between the markers replaced by ``body``."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(document):
        raise ValueError(f"no {BEGIN} ... {END} in the document")
    return pattern.sub(lambda _: f"{BEGIN}\n{body}\n{END}", document)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explore_model_check")
    parser.add_argument("--output", type=Path, required=True, help="the document to update")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    results = []
    for faults in (False, True):
        print(f"model check {INSTANCES} x {HOSTS}, faults {faults} ...", flush=True)
        result = model_check(
            lambda: initial_cloud(INSTANCES, HOSTS), Bounds(), faults=faults, workers=args.workers
        )
        print(f"  {result.states:,} states in {result.seconds:.1f} s: {result.describe()}")
        results.append((faults, result))
    body = report(results, args.workers, load)
    args.output.write_text(splice(args.output.read_text(encoding="utf-8"), body), "utf-8")
    print(f"figures written to {args.output}")
    return 0 if all(r.ok for _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
