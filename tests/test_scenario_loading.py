"""Loading scenario files: every malformed file is a ScenarioError naming file, key, line.

The CLI turns a ScenarioError into exit 2 (a few subprocess tests at the end check that,
and that nothing prints a traceback); the rest calls :func:`load_scenario` directly and
pins the exact message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from coldmig_fsm import Host, ScenarioError, load_scenario, run_scenario
from coldmig_fsm.harness.scenario import (
    LIMITS,
    MAX_INT,
    OUTPUT_SHAPE,
    _Value,
    limits_markdown,
    parse_scenario,
)

HERE = Path(__file__).resolve().parent
SCENARIOS = sorted((HERE / "scenarios").glob("*.yaml"))
DOCS = HERE.parent / "docs" / "scenarios.md"

CLOUD = """\
hosts:
  - {name: host-a, vcpus: 8, ram_mb: 16384, disk_gb: 200}
  - {name: host-b, vcpus: 8, ram_mb: 16384, disk_gb: 200}
flavors:
  - {id: m1.tiny, vcpus: 1, ram_mb: 512, root_gb: 1}
instances:
  - {name: vm1, flavor: m1.tiny, host: host-a}
"""
"""Seven lines of a valid cloud; a test appends what it is about from line 8 on."""


def write(tmp_path: Path, content: str | bytes, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def problem(tmp_path: Path, content: str | bytes) -> str:
    """The ScenarioError message for ``content``, without the file name in front."""
    path = write(tmp_path, content)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def laughs(levels: int, width: int = 9) -> str:
    """A 'billion laughs' document: each level is ``width`` aliases of the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


# --- bytes, text, YAML ------------------------------------------------------------------


def test_bytes_that_are_not_utf8_name_the_line_and_the_byte(tmp_path: Path) -> None:
    content = CLOUD.encode() + b"steps:\n  - {op: stop, instance: \xffvm1}\n"
    offset = len(CLOUD) + len("steps:\n  - {op: stop, instance: ")
    assert problem(tmp_path, content) == (
        f"line 9: not UTF-8 text (byte 0xff at offset {offset});"
        " a scenario is a UTF-8 YAML or JSON file"
    )


def test_bytes_read_elsewhere_are_named_as_the_caller_says() -> None:
    assert [i["name"] for i in parse_scenario(CLOUD.encode()).instances] == ["vm1"]
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(b"hosts: [\xff]\n")
    assert str(caught.value).startswith("<stdin>: line 1: not UTF-8 text (byte 0xff at offset 8)")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(b"bogus: 1\n", "pasted")
    assert str(caught.value).startswith("pasted: bogus, line 1: unknown key 'bogus'")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, b"\xef\xbb\xbf" + CLOUD.encode()))
    assert [h.name for h in scenario.hosts] == ["host-a", "host-b"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("hosts: [\n  {name: a\n", "line 3, column 1: not valid YAML: while parsing a flow"),
        (CLOUD + "steps: *nowhere\n", "line 8, column 8: not valid YAML: found undefined alias"),
        (CLOUD + "---\nhosts: []\n", "line 8, column 1: not valid YAML: expected a single"),
        (CLOUD + "x: \x00\n", "line 8: not valid YAML: the character U+0000 is not allowed"),
        (CLOUD + "steps: !shell rm\n", "line 8, column 8: not valid YAML: could not determine"),
    ],
    ids=["unclosed", "undefined-alias", "two-documents", "nul", "unknown-tag"],
)
def test_text_that_is_not_yaml(tmp_path: Path, content: str, expected: str) -> None:
    assert problem(tmp_path, content).startswith(expected)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "(top level): a scenario is a mapping with hosts, flavors, instances, steps"),
        ("- a\n- b\n", "(top level), line 1: a scenario is a mapping with hosts, flavors, "),
        ("just words\n", "(top level), line 1: a scenario is a mapping with hosts, flavors, "),
    ],
    ids=["empty", "list", "scalar"],
)
def test_a_top_level_that_is_not_a_mapping(tmp_path: Path, content: str, expected: str) -> None:
    assert problem(tmp_path, content).startswith(expected)


def test_a_file_over_the_size_limit(tmp_path: Path) -> None:
    content = CLOUD + "#" * LIMITS.file_bytes + "\n"
    assert problem(tmp_path, content) == "larger than the limit of 131,072 bytes"


# --- aliases, nesting, long values ------------------------------------------------------


def test_a_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, laughs(9))  # 9**10 values once expanded
    started = time.perf_counter()
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert time.perf_counter() - started < 1.0
    # l0 and l1 hold 10 + 91 values; l2 would be 820, l3 7,381, and l4 passes 10,000.
    assert str(caught.value) == (
        f"{path}: line 5: more than 10,000 values (aliases counted by what they expand to)"
    )


def test_aliases_count_by_what_they_expand_to(tmp_path: Path) -> None:
    # l0..l3: 10 + 91 + 820 + 7,381 = 8,302 values and 4 keys: under the limit, but an
    # unknown key; one more level is over the limit.
    assert problem(tmp_path, laughs(3)).startswith("l0, line 1: unknown key 'l0'")
    assert problem(tmp_path, laughs(4)) == (
        "line 5: more than 10,000 values (aliases counted by what they expand to)"
    )


def test_an_alias_inside_its_own_anchor(tmp_path: Path) -> None:
    assert problem(tmp_path, CLOUD + "expect: &loop {steps: [*loop]}\n") == (
        "line 8: alias *loop refers to itself"
    )


def test_aliases_and_merge_keys_share_entries(tmp_path: Path) -> None:
    content = """\
hosts:
  - &small {name: host-a, vcpus: 8, ram_mb: 16384, disk_gb: 200}
  - {<<: *small, name: host-b, enabled: false}
flavors:
  - {id: m1.tiny, vcpus: 1, ram_mb: 512, root_gb: 1}
"""
    scenario = load_scenario(write(tmp_path, content))
    assert scenario.hosts == (
        Host("host-a", 8, 16384, 200),
        Host("host-b", 8, 16384, 200, enabled=False),
    )


def test_nesting_deeper_than_the_limit(tmp_path: Path) -> None:
    deep = "[" * LIMITS.depth + "]" * LIMITS.depth
    assert problem(tmp_path, CLOUD + f"expect: {deep}\n") == "line 8: nested deeper than 16 levels"
    # depth 16 itself passes the reader (the top mapping is level 1): what remains is the
    # shape of expect.
    fits = "[" * (LIMITS.depth - 1) + "]" * (LIMITS.depth - 1)
    assert problem(tmp_path, CLOUD + f"expect: {fits}\n") == (
        "expect, line 8: must be a mapping (a partial copy of the output), got " + fits
    )


def test_a_value_longer_than_the_limit(tmp_path: Path) -> None:
    content = CLOUD + f"steps:\n  - {{op: stop, instance: {'x' * (LIMITS.scalar_chars + 1)}}}\n"
    assert problem(tmp_path, content) == "line 9: a value of 1,025 characters (the limit is 1,024)"


def test_a_number_with_thousands_of_digits(tmp_path: Path) -> None:
    content = CLOUD.replace("vcpus: 8", "vcpus: " + "9" * 5000, 1)
    assert problem(tmp_path, content) == "line 2: a value of 5,000 characters (the limit is 1,024)"


def test_a_value_yaml_cannot_build(tmp_path: Path) -> None:
    content = CLOUD.replace("name: vm1", "name: 2026-13-45")
    assert problem(tmp_path, content) == (
        "instances[0].name, line 7: cannot read the value '2026-13-45': month must be in 1..12"
    )


# --- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            CLOUD.replace("hosts:", "hots:"),
            "hots, line 1: unknown key 'hots'; did you mean 'hosts'? one of config, expect,"
            " flavors, hosts, instances, invariants, projects, settle, steps",
        ),
        (
            CLOUD.replace("disk_gb: 200}", "disc_gb: 200}", 1),
            "hosts[0].disc_gb, line 2: unknown key 'disc_gb'; did you mean 'disk_gb'?",
        ),
        (
            CLOUD.replace("ram_mb: 512", "ram: 512"),
            "flavors[0].ram, line 5: unknown key 'ram'; did you mean 'ram_mb'?",
        ),
        (
            CLOUD.replace("host: host-a}", "host: host-a, vm_sate: active}"),
            "instances[0].vm_sate, line 7: unknown key 'vm_sate'; did you mean 'vm_state'?",
        ),
        (
            CLOUD + "config: {max_attempt: 2}\n",
            "config.max_attempt, line 8: unknown key 'max_attempt'; did you mean 'max_attempts'?",
        ),
        (
            CLOUD + "steps:\n  - {op: resize, instance: vm1, flavour: m1.tiny}\n",
            "steps[0].flavour, line 9: unknown key 'flavour'; did you mean 'flavor'? one of"
            " as, flavor, instance, op",
        ),
        (
            CLOUD + "steps:\n  - {op: migrat, instance: vm1}\n",
            "steps[0].op, line 9: unknown operation 'migrat'; did you mean 'migrate'?",
        ),
        (
            CLOUD + "steps:\n  - {instance: vm1}\n",
            "steps[0], line 9: missing key 'op'; one of migrate, resize,",
        ),
        (
            CLOUD + "steps:\n  - {op: fault, host: host-a, call: power_of}\n",
            "steps[0].call, line 9: unknown driver call 'power_of'; did you mean 'power_off'?",
        ),
        (
            CLOUD.replace("disk_gb: 200}", "disk_gb: 200, up: false}", 1),
            "hosts[0].up, line 2: unknown key 'up'; one of disk_available_least_gb,",
        ),
    ],
    ids=[
        "top",
        "host",
        "flavor",
        "instance",
        "config",
        "step",
        "op",
        "no-op",
        "fault-call",
        "host-up",
    ],
)
def test_unknown_keys_with_a_did_you_mean(tmp_path: Path, content: str, expected: str) -> None:
    assert problem(tmp_path, content).startswith(expected)


def test_a_key_given_twice(tmp_path: Path) -> None:
    assert problem(tmp_path, CLOUD + "hosts: []\n") == "hosts, line 8: duplicate key"
    content = CLOUD.replace("vcpus: 8,", "vcpus: 8, vcpus: 4,", 1)
    assert problem(tmp_path, content) == "hosts[0].vcpus, line 2: duplicate key"


def test_a_key_that_is_not_a_name(tmp_path: Path) -> None:
    assert problem(tmp_path, CLOUD + "? [a, b]\n: 1\n") == (
        "(top level), line 8: a key is a name, got a sequence"
    )
    assert problem(tmp_path, CLOUD + "yes: 1\n") == "(top level), line 8: a key is a name, got True"


def test_missing_keys_and_sections(tmp_path: Path) -> None:
    assert (
        problem(tmp_path, "flavors: []\n") == "hosts, line 1: missing; at least one entry is needed"
    )
    content = CLOUD.replace("{name: vm1, flavor: m1.tiny, host: host-a}", "{name: vm1}")
    assert problem(tmp_path, content) == "instances[0], line 7: missing key 'flavor'"
    content = CLOUD + "steps:\n  - {op: resize, instance: vm1}\n"
    assert problem(tmp_path, content) == "steps[0], line 9: missing key 'flavor'"


# --- types and ranges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("vcpus: 8", "vcpus: -1", "hosts[0].vcpus, line 2: must be a non-negative integer"),
        ("vcpus: 8", f"vcpus: {MAX_INT}", None),
        ("vcpus: 8", f"vcpus: {MAX_INT + 1}", "hosts[0].vcpus, line 2: must be a non-negative"),
        ("ram_mb: 16384", "ram_mb: 16384.5", "hosts[0].ram_mb, line 2: must be int, got 16384.5"),
        ("disk_gb: 200}", "disk_gb: '200'}", "hosts[0].disk_gb, line 2: must be int, got '200'"),
        ("vcpus: 1,", "vcpus: 0,", "flavors[0].vcpus, line 5: must be a positive integer up to"),
        ("name: vm1", "name: 42", "instances[0].name, line 7: must be str (quote it), got 42"),
        ("name: vm1", "name: ''", "instances[0].name, line 7: must be a non-empty string of"),
        ("name: vm1", f"name: {'v' * 255}", None),
        ("name: vm1", f"name: {'v' * 256}", "instances[0].name, line 7: must be a non-empty"),
        ("host: host-a}", "host: host-a, locked: 'no'}", "instances[0].locked, line 7: must be"),
        (
            "host: host-a}",
            "host: host-a, vm_state: actve}",
            "instances[0].vm_state, line 7: unknown value 'actve'; did you mean 'active'?",
        ),
        (
            "host: host-a}",
            "host: host-a, locked_by: nobody}",
            "instances[0].locked_by, line 7: unknown value 'nobody'; one of admin, owner",
        ),
        ("host: host-a}", "host: host-c}", "instances[0].host, line 7: unknown host 'host-c';"),
        ("disk_gb: 200}", "disk_gb: 200, enabled: 0}", "hosts[0].enabled, line 2: must be bool"),
    ],
)
def test_values_of_the_cloud(tmp_path: Path, old: str, new: str, expected: str | None) -> None:
    content = CLOUD.replace(old, new, 1)
    assert content != CLOUD
    if expected is None:
        load_scenario(write(tmp_path, content))
    else:
        assert problem(tmp_path, content).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config: {max_attempts: 0}", "config.max_attempts, line 8: must be a positive integer"),
        ("config: {max_attempts: 100}", None),
        ("config: {max_attempts: 101}", "config.max_attempts, line 8: must be a positive"),
        ("config: {resize_confirm_window: 31536000}", None),
        ("config: {resize_confirm_window: 31536001}", "config.resize_confirm_window, line 8:"),
        ("config: {shutdown_timeout: -1}", "config.shutdown_timeout, line 8: must be a non-neg"),
        ("config: {allow_resize_to_same_host: 1}", "config.allow_resize_to_same_host, line 8:"),
        ("steps: [{op: advance_clock, seconds: 0.5}]", None),
        ("steps: [{op: advance_clock, seconds: 31536000}]", None),
        ("steps: [{op: advance_clock, seconds: 31536001}]", "steps[0].seconds, line 8: must be"),
        ("steps: [{op: advance_clock, seconds: .nan}]", "steps[0].seconds, line 8: must be a n"),
        ("steps: [{op: advance_clock, seconds: .inf}]", "steps[0].seconds, line 8: must be a n"),
        ("steps: [{op: advance_clock, seconds: true}]", "steps[0].seconds, line 8: must be a n"),
        (f"steps: [{{op: advance_clock, seconds: {10**400}}}]", "steps[0].seconds, line 8: must"),
        ("steps: [{op: fault, host: host-a, call: power_off, times: 1000}]", None),
        ("steps: [{op: fault, host: host-a, call: power_off, times: 1001}]", "steps[0].times"),
        ("steps: [{op: fault, host: host-a, call: power_off, times: 0}]", "steps[0].times"),
        ("steps: [{op: fault, host: host-z, call: power_off}]", "steps[0].host, line 8: unknown"),
        ("steps: [{op: stop, instance: vm1, as: root}]", "steps[0].as, line 8: unknown value"),
        ("steps: [{op: stop, instance: [vm1]}]", "steps[0].instance, line 8: must be str"),
        ("steps: [{op: [migrate]}]", "steps[0].op, line 8: unknown operation ['migrate']"),
        ("steps: [migrate]", "steps[0], line 8: a step is a mapping with an 'op' key, got"),
        ("steps: {op: migrate}", "steps, line 8: must be a list, got {'op': 'migrate'}"),
        ("config: [1]", "config, line 8: must be a mapping, got [1]"),
    ],
)
def test_values_of_config_and_steps(tmp_path: Path, text: str, expected: str | None) -> None:
    content = CLOUD + text + "\n"
    if expected is None:
        load_scenario(write(tmp_path, content))
    else:
        assert problem(tmp_path, content).startswith(expected)


def _hosts(count: int) -> str:
    return "".join(f"  - {{name: h{i}, vcpus: 1, ram_mb: 1, disk_gb: 1}}\n" for i in range(count))


def test_at_most_so_many_hosts_instances_and_steps(tmp_path: Path) -> None:
    flavors = "flavors:\n  - {id: f, vcpus: 1, ram_mb: 1, root_gb: 1}\n"
    assert len(load_scenario(write(tmp_path, f"hosts:\n{_hosts(64)}{flavors}")).hosts) == 64
    assert problem(tmp_path, f"hosts:\n{_hosts(65)}{flavors}") == (
        "hosts, line 1: 65 hosts; the limit is 64"
    )
    instances = "".join(f"  - {{name: vm{i}, flavor: f, host: h0}}\n" for i in range(65))
    assert problem(tmp_path, f"hosts:\n{_hosts(1)}{flavors}instances:\n{instances}") == (
        "instances, line 5: 65 instances; the limit is 64"
    )
    steps = "  - {op: stop, instance: vm1}\n" * 256
    assert len(load_scenario(write(tmp_path, f"{CLOUD}steps:\n{steps}")).steps) == 256
    assert problem(tmp_path, f"{CLOUD}steps:\n{steps}  - {{op: stop, instance: vm1}}\n") == (
        "steps, line 8: 257 steps; the limit is 256"
    )


def test_duplicate_names(tmp_path: Path) -> None:
    content = CLOUD.replace("host-b", "host-a")
    assert problem(tmp_path, content) == "hosts[1], line 3: duplicate name 'host-a'"


# --- the expect block -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expect", "expected"),
    [
        (
            "{instance: {vm1: {host: host-b}}}",
            "expect.instance, line 8: unknown key 'instance'; did you mean 'instances'? one of"
            " actions, domains, driver_calls, faults, instances, migrations, notifications,"
            " steps, usage, violations",
        ),
        (
            "{instances: {vm1: {vm_stat: active}}}",
            "expect.instances.vm1.vm_stat, line 8: unknown key 'vm_stat'; did you mean"
            " 'vm_state'? one of flavor, host, locked, new_flavor, old_flavor, power_state,"
            " progress, task_state, vm_state",
        ),
        (
            "{instances: {vm2: {host: host-b}}}",
            "expect.instances.vm2, line 8: unknown instance 'vm2'; did you mean 'vm1'? one of vm1",
        ),
        (
            "{steps: [{op: stop, ok: true, eror: null}]}",
            "expect.steps[0].eror, line 8: unknown key 'eror'; did you mean 'error'? one of"
            " async, delivered, error, first, host, instance, ok, op, second, seconds, settled",
        ),
        (
            "{steps: [{op: stop, error: {typ: NoValidHost}}]}",
            "expect.steps[0].error.typ, line 8: unknown key 'typ'; did you mean 'type'? one"
            " of message, type",
        ),
        (
            "{migrations: [{id: 1, state: finished}]}",
            "expect.migrations[0].state, line 8: unknown key 'state'; did you mean 'status'? one of"
            " dest_compute, id, instance, source_compute, status, type",
        ),
        (
            "{usage: {host-c: {vcpus: 0}}}",
            "expect.usage.host-c, line 8: unknown host 'host-c'; did you mean 'host-b'? one of"
            " host-a, host-b",
        ),
        (
            "{usage: {host-a: {cpus: 1}}}",
            "expect.usage.host-a.cpus, line 8: unknown key 'cpus'; did you mean 'vcpus'? one"
            " of disk_gb, ram_mb, vcpus",
        ),
        (
            "{actions: {vm1: [{action: migrate, events: [{event: x, results: Success}]}]}}",
            "expect.actions.vm1[0].events[0].results, line 8: unknown key 'results'; did you"
            " mean 'result'? one of event, result",
        ),
        (
            "{driver_calls: [{host: host-a, verb: power_off}]}",
            "expect.driver_calls[0].verb, line 8: unknown key 'verb'; one of call, host, instance",
        ),
        (
            "{instances: [vm1]}",
            "expect.instances, line 8: a mapping in the output, got ['vm1']",
        ),
        (
            "{domains: {host-a: vm1}}",
            "expect.domains.host-a, line 8: a list in the output, got 'vm1'",
        ),
        (
            "{instances: {vm1: {host: {name: host-a}}}}",
            "expect.instances.vm1.host, line 8: a single value in the output, got {'name':"
            " 'host-a'}",
        ),
        ("[]", "expect, line 8: must be a mapping (a partial copy of the output), got []"),
    ],
)
def test_expect_keys_follow_the_output(tmp_path: Path, expect: str, expected: str) -> None:
    assert problem(tmp_path, f"{CLOUD}expect: {expect}\n") == expected


def test_expect_may_say_null_where_the_output_has_a_mapping(tmp_path: Path) -> None:
    content = f"{CLOUD}steps: [{{op: stop, instance: vm1}}]\nexpect: {{steps: [{{error: null}}]}}\n"
    assert load_scenario(write(tmp_path, content)).expect == {"steps": [{"error": None}]}


def _shape_keys(shape: Any, prefix: str = "") -> set[str]:
    """Every key path of OUTPUT_SHAPE, names and list items written as ``*``."""
    if shape is None or isinstance(shape, _Value):
        return set()  # a single value
    fields = getattr(shape, "fields", None)
    if fields is not None:
        paths = set()
        for key, value in fields.items():
            paths |= {f"{prefix}{key}"} | _shape_keys(value, f"{prefix}{key}.")
        return paths
    inner = getattr(shape, "value", None) if hasattr(shape, "names") else shape.item
    return _shape_keys(inner, f"{prefix}*.")


def _output_keys(value: Any, prefix: str = "", by_name: bool = False) -> set[str]:
    if isinstance(value, list):
        return set().union(*(_output_keys(v, f"{prefix}*.") for v in value))
    if not isinstance(value, dict):
        return set()
    paths: set[str] = set()
    for key, item in value.items():
        here = "*" if by_name else key
        named = prefix == "" and key in ("instances", "usage", "domains", "actions", "faults")
        if not by_name:
            paths.add(f"{prefix}{here}")
        paths |= _output_keys(item, f"{prefix}{here}.", by_name=named)
    return paths


def test_the_output_of_every_shipped_scenario_is_a_valid_expect(tmp_path: Path) -> None:
    # OUTPUT_SHAPE is the contract for expect blocks: whatever the runner prints must be
    # accepted as an expect block, and every key it allows must occur in some output.
    seen: set[str] = set()
    for path in SCENARIOS:
        scenario = load_scenario(path)
        output = run_scenario(scenario)
        seen |= _output_keys(output)
        data = yaml.safe_load(path.read_text())
        data["expect"] = json.loads(json.dumps(output))
        full = load_scenario(write(tmp_path, yaml.safe_dump(data), f"full-{path.name}"))
        assert full.expect == data["expect"]
    assert seen == _shape_keys(OUTPUT_SHAPE)


# --- enabled: false ----------------------------------------------------------------------


def test_a_disabled_host_is_loaded_disabled_and_the_scheduler_skips_it(tmp_path: Path) -> None:
    content = """\
hosts:
  - {name: host-a, vcpus: 8, ram_mb: 16384, disk_gb: 200}
  - {name: host-b, vcpus: 64, ram_mb: 262144, disk_gb: 2000, enabled: false}
  - {name: host-c, vcpus: 8, ram_mb: 16384, disk_gb: 200, enabled: true}
flavors:
  - {id: m1.tiny, vcpus: 1, ram_mb: 512, root_gb: 1}
instances:
  - {name: vm1, flavor: m1.tiny, host: host-a}
  - {name: vm2, flavor: m1.tiny, host: host-a}
steps:
  - {op: migrate, instance: vm1}
  - {op: migrate, instance: vm2, host: host-b}
"""
    scenario = load_scenario(write(tmp_path, content))
    assert [(h.name, h.enabled) for h in scenario.hosts] == [
        ("host-a", True),
        ("host-b", False),
        ("host-c", True),
    ]
    output = run_scenario(scenario)
    # host-b has by far the most free resources; without the flag the weighers pick it.
    assert output["steps"] == [
        {"op": "migrate", "instance": "vm1", "ok": True, "error": None},
        {
            "op": "migrate",
            "instance": "vm2",
            "host": "host-b",
            "ok": False,
            "error": {
                "type": "NoValidHost",
                "message": "No valid host was found. There are not enough hosts available.",
            },
            "async": True,
        },
    ]
    assert {name: (i["vm_state"], i["host"]) for name, i in output["instances"].items()} == {
        "vm1": ("resized", "host-c"),
        "vm2": ("active", "host-a"),
    }
    assert output["usage"]["host-b"] == {"vcpus": 0, "ram_mb": 0, "disk_gb": 0}
    assert output["domains"]["host-b"] == []
    enabled = load_scenario(write(tmp_path, content.replace("enabled: false", "enabled: true")))
    assert run_scenario(enabled)["instances"]["vm1"]["host"] == "host-b"


# --- the documented limits --------------------------------------------------------------


def test_docs_list_the_limits() -> None:
    assert limits_markdown() in DOCS.read_text()


# --- through the command line: exit 2, no traceback ---------------------------------------


def coldmig(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "coldmig_fsm", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    return done, time.perf_counter() - started


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (CLOUD.encode() + b"steps: [\xc3\x28]\n", "line 8: not UTF-8 text"),
        (laughs(9).encode(), "line 5: more than 10,000 values"),
        ((CLOUD + "expect: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "line 8"),
        ((CLOUD + "expect: {instances: {vm1: {vm_stat: active}}}\n").encode(), "vm_stat, line 8"),
    ],
    ids=["not-utf8", "billion-laughs", "deep", "expect-typo"],
)
def test_the_runner_exits_2_without_a_traceback(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = write(tmp_path, content, "broken.yaml")
    done, elapsed = coldmig("scenario", "run", str(path))
    assert (done.returncode, done.stdout) == (2, "")
    assert "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert message.startswith(f"invalid scenario: {path}: ") and expected in message
    # Mostly the interpreter starting: loading itself is pinned under a second above.
    assert elapsed < 30


@pytest.mark.parametrize(
    ("expect", "expected"),
    [
        (
            "{instances: {vm1: {vm_state: resizd}}}",
            "expect.instances.vm1.vm_state, line 8: unknown vm_state 'resizd'; "
            "did you mean 'resized'? one of active, building,",
        ),
        (
            "{instances: {vm1: {task_state: resize_prepp}}}",
            "expect.instances.vm1.task_state, line 8: unknown task_state 'resize_prepp'; "
            "did you mean 'resize_prep'?",
        ),
        (
            "{instances: {vm1: {power_state: runing}}}",
            "expect.instances.vm1.power_state, line 8: unknown power_state 'runing'; "
            "did you mean 'running'?",
        ),
        (
            "{instances: {vm1: {host: host-c}}}",
            "expect.instances.vm1.host, line 8: unknown host 'host-c'; "
            "did you mean 'host-b'? one of host-a, host-b",
        ),
        (
            "{instances: {vm1: {new_flavor: m1.tin}}}",
            "expect.instances.vm1.new_flavor, line 8: unknown flavor 'm1.tin'; "
            "did you mean 'm1.tiny'? one of m1.tiny",
        ),
        (
            "{migrations: [{status: confirmd}]}",
            "expect.migrations[0].status, line 8: unknown migration status 'confirmd'; "
            "did you mean 'confirmed'?",
        ),
        (
            "{migrations: [{type: rezise}]}",
            "expect.migrations[0].type, line 8: unknown migration type 'rezise'; "
            "did you mean 'resize'? one of migration, resize",
        ),
        (
            "{steps: [{op: migrat, ok: true}]}",
            "expect.steps[0].op, line 8: unknown operation 'migrat'; did you mean 'migrate'?",
        ),
        (
            "{steps: [{op: migrate, ok: yes please}]}",
            "expect.steps[0].ok, line 8: unknown value (true or false) 'yes please';",
        ),
    ],
)
def test_expect_values_of_known_sets_are_checked(
    tmp_path: Path, expect: str, expected: str
) -> None:
    # A typo in a state's name can never match: exit 2 (an invalid file), not 1.
    assert problem(tmp_path, CLOUD + f"expect: {expect}\n").startswith(expected)


def test_expect_values_may_be_null_or_right(tmp_path: Path) -> None:
    content = CLOUD + (
        "expect: {instances: {vm1: {vm_state: active, task_state: null, host: host-a,"
        " flavor: m1.tiny, old_flavor: null, power_state: running, locked: false}}}\n"
    )
    assert load_scenario(write(tmp_path, content)).expect == {
        "instances": {
            "vm1": {
                "vm_state": "active",
                "task_state": None,
                "host": "host-a",
                "flavor": "m1.tiny",
                "old_flavor": None,
                "power_state": "running",
                "locked": False,
            }
        }
    }
