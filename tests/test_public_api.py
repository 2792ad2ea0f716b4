"""The exported names are the product: pin them, and each error's stdlib base and HTTP code."""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import coldmig_fsm
from coldmig_fsm import (
    Cloud,
    ComputeHostNotFound,
    FlavorNotFound,
    InstanceExists,
    MemoryStore,
    SqliteStore,
    Store,
    UnableToMigrateToSelf,
    VmState,
    exceptions,
    load_scenario,
    run_scenario,
)
from coldmig_fsm.harness import scenario

from .conftest import FLAVORS, make_cloud

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "conformance" / "probe-results"

PUBLIC = [
    "MACHINE",
    "OPERATIONS",
    "ActionEvent",
    "Allocation",
    "Caller",
    "CannotMigrateToSameHost",
    "CannotResizeDisk",
    "CannotResizeToSameFlavor",
    "Clock",
    "Cloud",
    "CloudConfig",
    "ColdmigError",
    "ComputeAPI",
    "ComputeHostNotFound",
    "ComputeResourcesUnavailable",
    "ComputeService",
    "Conductor",
    "Conflict",
    "DiskInfo",
    "DriverCapabilities",
    "DriverTimeout",
    "FakeFault",
    "FakeHypervisor",
    "Fault",
    "FaultMode",
    "Flavor",
    "FlavorDiskSmallerThanMinDisk",
    "FlavorNotFound",
    "GuestInfo",
    "Host",
    "HypervisorDriver",
    "HypervisorError",
    "Instance",
    "InstanceAction",
    "InstanceExists",
    "InstanceFaultRollback",
    "InstanceInvalidState",
    "InstanceIsLocked",
    "InstanceNotFound",
    "Invalid",
    "LostMessage",
    "Machine",
    "MachineDefinitionError",
    "MachineState",
    "ManualClock",
    "MaxRetriesExceeded",
    "MemoryStore",
    "Migration",
    "MigrationCancelled",
    "MigrationNotFound",
    "MigrationNotFoundByStatus",
    "MigrationStatus",
    "MigrationType",
    "MoveInterrupted",
    "NoValidHost",
    "NotFound",
    "Notification",
    "Op",
    "Operation",
    "OperationPending",
    "OperationResult",
    "OperationSpec",
    "Outcome",
    "PolicyNotAuthorized",
    "PowerState",
    "Preflight",
    "PreparedRequest",
    "Project",
    "QuotaError",
    "RequestRefused",
    "Resources",
    "Runtime",
    "ScenarioError",
    "SqliteStore",
    "Store",
    "SystemClock",
    "TaskState",
    "UnableToMigrateToSelf",
    "UnexpectedMigrationStatusError",
    "UnexpectedTaskStateError",
    "VmState",
    "invariants",
    "load_scenario",
    "messages",
    "run_scenario",
]


def test_all_is_pinned() -> None:
    assert coldmig_fsm.__all__ == PUBLIC
    assert sorted(PUBLIC, key=lambda n: (not n.isupper(), n)) == PUBLIC
    star: dict[str, Any] = {}
    exec("from coldmig_fsm import *", star)
    assert sorted(set(star) - {"__builtins__"}) == sorted(PUBLIC)


def test_every_error_class_is_exported_at_the_top() -> None:
    defined = sorted(
        name
        for name, value in vars(exceptions).items()
        if isinstance(value, type) and issubclass(value, exceptions.ColdmigError)
    )
    assert exceptions.__all__ == defined
    for name in defined:
        assert getattr(coldmig_fsm, name) is getattr(exceptions, name), name


# name: (HTTP code, direct bases, the stdlib type an ``except`` can name)
ERRORS: dict[str, tuple[int, tuple[str, ...], type[BaseException]]] = {
    "ColdmigError": (500, ("Exception",), Exception),
    "RequestRefused": (400, ("ColdmigError",), Exception),
    "PolicyNotAuthorized": (403, ("RequestRefused", "PermissionError"), PermissionError),
    "QuotaError": (403, ("RequestRefused", "PermissionError"), PermissionError),
    "NotFound": (404, ("RequestRefused", "LookupError"), LookupError),
    "InstanceNotFound": (404, ("NotFound",), LookupError),
    "FlavorNotFound": (400, ("NotFound",), LookupError),
    "ComputeHostNotFound": (400, ("NotFound",), LookupError),
    "MigrationNotFound": (404, ("NotFound",), LookupError),
    "MigrationNotFoundByStatus": (400, ("NotFound",), LookupError),
    "Invalid": (400, ("RequestRefused", "ValueError"), ValueError),
    "CannotResizeToSameFlavor": (400, ("Invalid",), ValueError),
    "CannotResizeDisk": (400, ("Invalid",), ValueError),
    "FlavorDiskSmallerThanMinDisk": (400, ("Invalid",), ValueError),
    "CannotMigrateToSameHost": (400, ("Invalid",), ValueError),
    "Conflict": (409, ("RequestRefused", "RuntimeError"), RuntimeError),
    "InstanceIsLocked": (409, ("Conflict",), RuntimeError),
    "InstanceInvalidState": (409, ("Conflict",), RuntimeError),
    "InstanceExists": (409, ("Conflict",), RuntimeError),
    "UnexpectedTaskStateError": (409, ("Conflict",), RuntimeError),
    "UnexpectedMigrationStatusError": (409, ("Conflict",), RuntimeError),
    "NoValidHost": (500, ("ColdmigError",), Exception),
    "MaxRetriesExceeded": (500, ("NoValidHost",), Exception),
    "ComputeResourcesUnavailable": (400, ("ColdmigError",), Exception),
    "MoveInterrupted": (500, ("ColdmigError",), Exception),
    "MigrationCancelled": (500, ("MoveInterrupted",), Exception),
    "OperationPending": (500, ("ColdmigError",), Exception),
    "HypervisorError": (500, ("ColdmigError", "OSError"), OSError),
    "InstanceFaultRollback": (500, ("HypervisorError",), OSError),
    "DriverTimeout": (500, ("HypervisorError",), OSError),
    "UnableToMigrateToSelf": (400, ("HypervisorError",), OSError),
    "ScenarioError": (400, ("ColdmigError", "ValueError"), ValueError),
    "MachineDefinitionError": (500, ("ColdmigError", "TypeError"), TypeError),
}


def test_the_table_covers_every_error() -> None:
    assert sorted(ERRORS) == exceptions.__all__


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_each_error_code_and_stdlib_base(name: str) -> None:
    code, bases, stdlib = ERRORS[name]
    cls = getattr(exceptions, name)
    assert "code" in vars(cls)  # each class states its own, as Nova's do
    assert cls.code == code
    assert tuple(b.__name__ for b in cls.__bases__) == bases
    nearest = next(c for c in cls.__mro__ if c.__module__ == builtins.__name__)
    assert nearest is stdlib


def _docstring_block(title: str) -> list[str]:
    """The lines of the literal block that follows the paragraph ending with ``title``."""
    doc = exceptions.__doc__ or ""
    after = doc.split(title, 1)[1].split("\n\n", 2)[1]
    return after.splitlines()


def test_the_tree_in_the_docstring_is_current() -> None:
    row = re.compile(r"^(?P<lead>[ │├└─]*)(?P<name>[A-Z]\w+) +(?P<code>\d{3})\b")
    parents: dict[int, str] = {}
    seen: dict[str, tuple[str, int]] = {}
    for line in _docstring_block("each class's ``code``::"):
        found = row.match(line)
        if found is None:
            continue
        depth = len(found["lead"]) // 4
        parents[depth] = found["name"]
        seen[found["name"]] = (parents.get(depth - 1, "Exception"), int(found["code"]))
        for added in ERRORS[found["name"]][1][1:]:
            assert f"({added})" in line, line
    assert seen == {name: (bases[0], code) for name, (code, bases, _) in ERRORS.items()}


def test_the_code_table_in_the_docstring_is_current() -> None:
    listed = {}
    for line in _docstring_block("no such class::"):
        found = re.match(r"^    (\w+) +(\d{3}) ", line)
        if found is not None:
            listed[found[1]] = int(found[2])
    assert listed == {name: getattr(exceptions, name).code for name in listed}
    assert len(listed) == 22


def _recorded() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(RESULTS.glob("*.json")):
        yield path.stem, json.loads(path.read_text())


def test_refusal_codes_are_the_statuses_nova_answered() -> None:
    # Every API error Nova 34 answered in the recorded probes, with its HTTP status.
    answered = {
        (step["error"]["type"], step["error"]["http_status"])
        for _, result in _recorded()
        for step in result["steps"]
        if step["error"] is not None and step["error"].get("http_status") is not None
    }
    assert answered == {
        ("CannotMigrateToSameHost", 400),
        ("CannotResizeToSameFlavor", 400),
        ("ComputeHostNotFound", 400),
        ("FlavorNotFound", 400),
        ("InstanceInvalidState", 409),
        ("InstanceIsLocked", 409),
        ("InstanceNotFound", 404),
        ("PolicyNotAuthorized", 403),
        ("QuotaError", 403),
    }
    for name, status in answered:
        assert getattr(exceptions, name).code == status, name


def _scenario_file(stem: str) -> Path:
    probe = ROOT / "conformance" / "probe-scenarios" / f"{stem}.yaml"
    return probe if probe.exists() else ROOT / "tests" / "scenarios" / f"{stem}.yaml"


def test_fault_codes_are_those_nova_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    clouds: list[Cloud] = []
    build = scenario.build_cloud

    def keep(parsed: scenario.Scenario, **options: Any) -> Cloud:  # run_scenario's, to read faults
        clouds.append(build(parsed, **options))
        return clouds[-1]

    monkeypatch.setattr(scenario, "build_cloud", keep)
    compared = []
    for stem, nova in _recorded():
        if not nova["faults"]:
            continue
        run_scenario(load_scenario(_scenario_file(stem)))
        cloud = clouds[-1]
        ours = {name: [f.code for f in cloud.faults(name)] for name in nova["faults"]}
        assert ours == {n: [f["code"] for f in fs] for n, fs in nova["faults"].items()}, stem
        compared.append((stem, [f.exception_type for f in cloud.faults("vm1")]))
    assert compared == [
        ("auto-confirm-busy-or-error", ["HypervisorError"]),
        ("fault-confirm-raise", ["HypervisorError"]),
        ("fault-finish-migration-raise", ["HypervisorError"]),
        ("fault-finish-revert-raise", ["HypervisorError"]),
        ("fault-migrate-disk-raise-stopped", ["HypervisorError"]),
        ("fault-migrate-disk-raise", ["HypervisorError"]),
        ("fault-migrate-disk-rollback", ["HypervisorError"]),
        ("fault-revert-destroy-raise", ["HypervisorError"]),
        ("migrate-same-host-allowed", ["NoValidHost"]),
        ("no-valid-host", ["NoValidHost"]),
    ]


def test_a_fault_records_the_error_class_code_and_500_for_foreign_errors() -> None:
    cloud = make_cloud()
    vm = cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.runtime.fault(vm, UnableToMigrateToSelf("host-a: cannot"), "host-a")
    cloud.runtime.fault(vm, KeyError("boom"), "host-a")
    assert [(f.code, f.exception_type) for f in cloud.faults("vm1")] == [
        (400, "UnableToMigrateToSelf"),
        (500, "KeyError"),
    ]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sqlite = SqliteStore(tmp_path / "boot.sqlite")
    yield sqlite
    sqlite.close()


@pytest.fixture
def booted(store: Store) -> Cloud:
    cloud = Cloud.build([coldmig_fsm.Host("host-a", 8, 16384, 200)], FLAVORS, store=store)
    cloud.boot("vm1", "m1.tiny", "host-a")
    return cloud


def _names(cloud: Cloud) -> list[str]:
    return [i.name for i in cloud.instances()]


def test_boot_of_an_unknown_flavor_is_flavor_not_found(booted: Cloud) -> None:
    with pytest.raises(FlavorNotFound, match=r"^Flavor m1\.huge could not be found\.$") as e:
        booted.boot("vm2", "m1.huge", "host-a")
    assert (e.value.code, isinstance(e.value, ValueError)) == (400, False)
    assert _names(booted) == ["vm1"]


def test_boot_on_an_unknown_host_is_compute_host_not_found(booted: Cloud) -> None:
    with pytest.raises(ComputeHostNotFound, match=r"^Compute host host-z could not be found\.$"):
        booted.boot("vm2", "m1.tiny", "host-z")
    assert _names(booted) == ["vm1"]


def test_boot_of_a_taken_name_or_uuid_is_instance_exists(booted: Cloud) -> None:
    with pytest.raises(InstanceExists, match=r"^Instance vm1 already exists\.$") as e:
        booted.boot("vm1", "m1.small", "host-a")
    assert e.value.code == 409
    taken = booted.instance("vm1").uuid
    with pytest.raises(InstanceExists, match=rf"^Instance {taken} already exists \(named vm1\)\.$"):
        booted.boot("vm2", "m1.tiny", "host-a", uuid=taken)
    booted.boot("gone", "m1.tiny", "host-a", vm_state=VmState.DELETED)
    with pytest.raises(InstanceExists, match=r"^Instance gone already exists\.$"):
        booted.boot("gone", "m1.tiny", "host-a")
    assert _names(booted) == ["vm1", "gone"]


def test_boot_looks_names_up_by_index(booted: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    def scan() -> None:
        raise AssertionError("boot read every instance")

    monkeypatch.setattr(booted.store, "list_instances", scan)
    booted.boot("vm2", "m1.tiny", "host-a")
    monkeypatch.undo()
    assert _names(booted) == ["vm1", "vm2"]


def test_the_code_table_in_docs_api_is_current() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    listed = {
        name: int(code)
        for code, names in re.findall(r"^\| (\d{3}) \| (.+) \|$", text, re.M)
        for name in re.findall(r"`(\w+)`", names)
    }
    assert listed == {name: code for name, (code, _, _) in ERRORS.items()}
