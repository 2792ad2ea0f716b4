"""The matcher of scenario ``expect`` blocks: every kind of mismatch, reported exactly.

``match_expectations(expected, actual)`` treats ``expected`` as partial for mappings
(keys it does not name are not checked) and exact for lists (length and order) and
scalars (value and type; an int matches a float of the same value, a bool matches only a
bool).
"""

from __future__ import annotations

from typing import Any

import pytest

from coldmig_fsm.harness.scenario import match_expectations

OUTPUT: dict[str, Any] = {
    "instances": {
        "vm1": {"vm_state": "resized", "host": "host-b", "locked": False, "vcpus": 1},
        "vm2": {"vm_state": "active", "host": "host-a", "locked": True, "vcpus": 2},
    },
    "migrations": [
        {"id": 1, "status": "finished", "source": "host-a", "dest": "host-b"},
        {"id": 2, "status": "error", "source": "host-a", "dest": None},
    ],
    "notifications": ["compute.instance.resize.prep.start", "compute.instance.resize.end"],
    "usage": {"host-a": [1, 512, 1], "host-b": [1, 512, 1]},
}


def test_a_matching_partial_expectation_has_no_difference() -> None:
    expected = {
        "instances": {"vm1": {"host": "host-b"}},
        "migrations": [{"status": "finished"}, {"dest": None}],
        "usage": {"host-a": [1, 512, 1]},
    }
    assert match_expectations(expected, OUTPUT) == []


def test_the_whole_output_matches_itself() -> None:
    assert match_expectations(OUTPUT, OUTPUT) == []


@pytest.mark.parametrize(
    ("expected", "differences"),
    [
        pytest.param(
            {"instances": {"vm1": {"host": "host-a"}}},
            ["instances.vm1.host: expected 'host-a', got 'host-b'"],
            id="scalar",
        ),
        pytest.param(
            {"instances": {"vm1": {"vcpus": "1"}}},
            ["instances.vm1.vcpus: expected '1', got 1"],
            id="scalar-of-another-type",
        ),
        pytest.param(
            {"instances": {"vm2": {"vcpus": True}}},
            ["instances.vm2.vcpus: expected True, got 2"],
            id="bool-for-int",
        ),
        pytest.param(
            {"instances": {"vm1": {"locked": 0}}},
            ["instances.vm1.locked: expected 0, got False"],
            id="int-for-bool",
        ),
        pytest.param(
            {"instances": {"vm2": {"locked": 1}}},
            ["instances.vm2.locked: expected 1, got True"],
            id="one-for-true",
        ),
        pytest.param(
            {"migrations": [{"dest": "host-c"}, {"dest": None}]},
            ["migrations[0].dest: expected 'host-c', got 'host-b'"],
            id="scalar-in-a-list",
        ),
        pytest.param(
            {"migrations": [{"dest": "host-b"}, {"dest": "host-c"}]},
            ["migrations[1].dest: expected 'host-c', got None"],
            id="none-expected-a-value",
        ),
        pytest.param(
            {"instances": {"vm3": {"host": "host-a"}}},
            ["instances.vm3: missing (expected {'host': 'host-a'})"],
            id="missing-key",
        ),
        pytest.param(
            {"instances": {"vm1": {"task_state": None}}},
            ["instances.vm1.task_state: missing (expected None)"],
            id="missing-key-expected-none",
        ),
        pytest.param(
            {"faults": []},
            ["faults: missing (expected [])"],
            id="missing-top-level-key",
        ),
        pytest.param(
            {"migrations": [{"id": 1}]},
            ["migrations: expected 1 items [{'id': 1}], got 2: " + repr(OUTPUT["migrations"])],
            id="list-too-short",
        ),
        pytest.param(
            {"notifications": [*OUTPUT["notifications"], "compute.instance.resize.end"]},
            [
                "notifications: expected 3 items "
                + repr([*OUTPUT["notifications"], "compute.instance.resize.end"])
                + ", got 2: "
                + repr(OUTPUT["notifications"])
            ],
            id="list-too-long",
        ),
        pytest.param(
            {"usage": {"host-a": []}},
            ["usage.host-a: expected 0 items [], got 3: [1, 512, 1]"],
            id="empty-list-expected",
        ),
        pytest.param(
            {"notifications": list(reversed(OUTPUT["notifications"]))},
            [
                "notifications[0]: expected 'compute.instance.resize.end', "
                "got 'compute.instance.resize.prep.start'",
                "notifications[1]: expected 'compute.instance.resize.prep.start', "
                "got 'compute.instance.resize.end'",
            ],
            id="list-order",
        ),
        pytest.param(
            {"migrations": [{"id": 2}, {"id": 1}]},
            ["migrations[0].id: expected 2, got 1", "migrations[1].id: expected 1, got 2"],
            id="list-order-of-mappings",
        ),
        pytest.param(
            {"instances": {"vm1": {"host": "host-a", "vm_state": "active"}, "vm2": {"vcpus": 1}}},
            [
                "instances.vm1.host: expected 'host-a', got 'host-b'",
                "instances.vm1.vm_state: expected 'active', got 'resized'",
                "instances.vm2.vcpus: expected 1, got 2",
            ],
            id="nested-several-at-once",
        ),
        pytest.param(
            {"usage": {"host-b": [1, 1024, 1]}},
            ["usage.host-b[1]: expected 1024, got 512"],
            id="nested-list-in-mapping",
        ),
        pytest.param(
            {"instances": {"vm1": ["host-b"]}},
            [f"instances.vm1: expected a list, got {OUTPUT['instances']['vm1']!r}"],
            id="list-for-mapping",
        ),
        pytest.param(
            {"migrations": {"id": 1}},
            [f"migrations: expected a mapping, got {OUTPUT['migrations']!r}"],
            id="mapping-for-list",
        ),
        pytest.param(
            {"instances": {"vm1": {"host": {"name": "host-b"}}}},
            ["instances.vm1.host: expected a mapping, got 'host-b'"],
            id="mapping-for-scalar",
        ),
    ],
)
def test_each_mismatch_is_reported_at_its_path(expected: Any, differences: list[str]) -> None:
    assert match_expectations(expected, OUTPUT) == differences


def test_int_and_float_of_the_same_value_match() -> None:
    assert match_expectations({"a": 1}, {"a": 1.0}) == []
    assert match_expectations({"a": 1.0}, {"a": 1}) == []
    assert match_expectations({"a": 1.5}, {"a": 1}) == ["a: expected 1.5, got 1"]


def test_keys_the_expectation_does_not_name_are_not_checked() -> None:
    assert match_expectations({}, OUTPUT) == []
    assert match_expectations({"instances": {}}, OUTPUT) == []


def test_the_top_level_must_be_a_mapping_when_one_is_expected() -> None:
    assert match_expectations({"a": 1}, [1]) == ["(top): expected a mapping, got [1]"]
