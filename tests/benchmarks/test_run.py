"""The report writer of ``benchmarks.run``: a section regenerated alone is spliced in,
and the header keeps one "regenerated alone" line per set of sections."""

from __future__ import annotations

import datetime as dt

from benchmarks._common import FULL, Section, Verdict
from benchmarks.run import render, splice

_START = dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC)


def _section(letter: str, measured: str) -> Section:
    return Section(
        title=f"{letter} Something measured",
        how="timed",
        verdicts=[Verdict(f"{letter} target", measured, "<= 1", passed=measured == "1")],
    )


def _stamps(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("- regenerated alone")]


def test_a_section_regenerated_again_replaces_its_stamp_and_keeps_the_others() -> None:
    full = render([_section("(a)", "1"), _section("(e)", "2")], FULL, _START, 10.0, "0.1")
    once = splice(full, [_section("(e)", "3")], _START, 5.0, "0.2")
    both = splice(once, [_section("(a)", "4"), _section("(b)", "5")], _START, 6.0, "0.3")
    again = splice(both, [_section("(e)", "1")], _START, 7.0, "0.4")

    assert [s.split(":", 1)[0] for s in _stamps(again)] == [
        "- regenerated alone ((a) (b))",
        "- regenerated alone ((e))",
    ]
    assert _stamps(again)[1].endswith("7 s, by `python -m benchmarks.run --only verify --splice`")
    summary = again.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert [line for line in summary.splitlines() if line.startswith("| (")] == [
        "| (a) target | 4 | <= 1 | **MISS** |",
        "| (b) target | 5 | <= 1 | **MISS** |",
        "| (e) target | 1 | <= 1 | **PASS** |",
    ]


def test_a_wider_regeneration_drops_the_stamps_it_covers() -> None:
    full = render([_section("(a)", "1"), _section("(e)", "2")], FULL, _START, 10.0, "0.1")
    one = splice(full, [_section("(e)", "3")], _START, 5.0, "0.2")
    wider = splice(one, [_section("(a)", "1"), _section("(e)", "1")], _START, 6.0, "0.3")

    assert [s.split(":", 1)[0] for s in _stamps(wider)] == ["- regenerated alone ((a) (e))"]
