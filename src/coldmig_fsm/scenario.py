"""Scenario files: a small cloud, a list of operations, what must hold afterwards.

The contract is ``spec/scenario-format.md``: YAML (or JSON) in, JSON out, an optional
``expect`` block that is a partial copy of the output. :func:`load_scenario` validates a
file and raises :class:`~coldmig_fsm.exceptions.ScenarioError` naming the file, the key
and the line; :func:`run_scenario` runs it on the fake cloud and returns the output;
:func:`match_expectations` compares an output with an ``expect`` block.

Matching rules: a mapping in ``expect`` must have each of its keys in the output, with a
matching value (other output keys are ignored); a list must have the same length as the
output's list and match it element by element; anything else must be equal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs
import yaml

from .cloud import Cloud, Operation
from .drivers.fake import VERBS, FakeFault, FaultMode
from .exceptions import ColdmigError, ScenarioError
from .messages import KINDS
from .records import Caller, CloudConfig, Flavor, Host, Project
from .states import TaskState, VmState

__all__ = ["Scenario", "load_scenario", "match_expectations", "run_scenario"]

SUPPORTED_OPS: Final = {
    "migrate": {"instance", "host", "as"},
    "resize": {"instance", "flavor", "as"},
    "confirm_resize": {"instance", "as"},
    "revert_resize": {"instance", "as"},
    "stop": {"instance", "as"},
    "start": {"instance", "as"},
    "lock": {"instance", "as"},
    "unlock": {"instance", "as"},
    "delete": {"instance", "as"},
    "abort_migration": {"instance", "as"},
    "fault": {"host", "call", "mode", "times", "message", "rollback"},
    "restart_compute": {"host"},
    "advance_clock": {"seconds"},
}
REQUIRED_OP_KEYS: Final = {
    "resize": {"instance", "flavor"},
    "fault": {"host", "call"},
    "restart_compute": {"host"},
    "advance_clock": {"seconds"},
}
FAULT_MODES: Final = ("raise", "crash", "hang", "lose")
CLOUD_OPS: Final = frozenset({"fault", "restart_compute", "advance_clock"})
_TOP_KEYS: Final = {"config", "hosts", "flavors", "projects", "instances", "steps", "expect"}
_CONFIG_TYPES: Final[dict[str, type]] = {
    "allow_resize_to_same_host": bool,
    "resize_confirm_window": int,
    "max_attempts": int,
    "shutdown_timeout": int,
}


@attrs.frozen
class Scenario:
    """A validated scenario file."""

    path: str
    config: CloudConfig
    hosts: tuple[Host, ...]
    flavors: tuple[Flavor, ...]
    projects: tuple[Project, ...]
    instances: tuple[dict[str, Any], ...]
    steps: tuple[dict[str, Any], ...]
    expect: dict[str, Any] | None


# --- loading with line numbers ---------------------------------------------------------

Path_ = tuple[str | int, ...]


class _Document:
    """The parsed YAML and the line of every key/item in it."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines: dict[Path_, int] = {}
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            self.data: Any = self._walk(loader, node, ()) if node is not None else None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f", line {mark.line + 1}" if mark is not None else ""
            raise ScenarioError(f"{path}{line}: invalid YAML: {error}") from None
        finally:
            loader.dispose()

    def _walk(self, loader: yaml.SafeLoader, node: yaml.Node, at: Path_) -> Any:
        self.lines[at] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                result[str(key)] = self._walk(loader, value_node, (*at, str(key)))
                self.lines[(*at, str(key))] = key_node.start_mark.line + 1
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._walk(loader, item, (*at, i)) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    def error(self, at: Path_, problem: str) -> ScenarioError:
        key = _show_path(at) or "(top level)"
        line = None
        for depth in range(len(at), -1, -1):
            line = self.lines.get(at[:depth])
            if line is not None:
                break
        where = f", line {line}" if line is not None else ""
        return ScenarioError(f"{self.path}: {key}{where}: {problem}")


def _show_path(at: Path_) -> str:
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        ScenarioError: unreadable file, invalid YAML, an unknown or missing key, a value of
            the wrong type, an unknown reference (flavor, host, instance) or an operation
            this version does not run. The message names the file, the key and the line.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"{name}: cannot read: {error.strerror}") from None
    doc = _Document(name, text)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "a scenario is a mapping with hosts, flavors, instances, steps")
    for key in data:
        if key not in _TOP_KEYS:
            raise doc.error((key,), f"unknown key; expected one of {', '.join(sorted(_TOP_KEYS))}")
    config = _config(doc, data.get("config") or {})
    hosts = tuple(
        _record(doc, ("hosts", i), item, Host, required=("name", "vcpus", "ram_mb", "disk_gb"))
        for i, item in enumerate(_list(doc, data, "hosts", required=True))
    )
    flavors = tuple(
        _record(doc, ("flavors", i), item, Flavor, required=("id", "vcpus", "ram_mb", "root_gb"))
        for i, item in enumerate(_list(doc, data, "flavors", required=True))
    )
    projects = tuple(
        _record(doc, ("projects", i), item, Project, required=("id",))
        for i, item in enumerate(_list(doc, data, "projects"))
    )
    host_names = {h.name for h in hosts}
    flavor_ids = {f.id for f in flavors}
    instances = tuple(
        _instance(doc, i, item, host_names, flavor_ids)
        for i, item in enumerate(_list(doc, data, "instances"))
    )
    _unique(doc, "hosts", [h.name for h in hosts])
    _unique(doc, "flavors", [f.id for f in flavors])
    _unique(doc, "instances", [i["name"] for i in instances])
    steps = tuple(
        _step(doc, i, item, host_names) for i, item in enumerate(_list(doc, data, "steps"))
    )
    expect = data.get("expect")
    if expect is not None and not isinstance(expect, dict):
        raise doc.error(("expect",), "expect is a mapping (a partial copy of the output)")
    return Scenario(name, config, hosts, flavors, projects, instances, steps, expect)


def _list(doc: _Document, data: dict[str, Any], key: str, required: bool = False) -> list[Any]:
    value = data.get(key)
    if value is None:
        if required:
            raise doc.error((key,), "missing; at least one entry is needed")
        return []
    if not isinstance(value, list):
        raise doc.error((key,), "must be a list")
    return value


def _unique(doc: _Document, key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise doc.error((key, index), f"duplicate name {name!r}")
        seen.add(name)


def _config(doc: _Document, value: Any) -> CloudConfig:
    if not isinstance(value, dict):
        raise doc.error(("config",), "must be a mapping")
    for key, item in value.items():
        expected = _CONFIG_TYPES.get(key)
        if expected is None:
            raise doc.error(("config", key), f"unknown option; one of {', '.join(_CONFIG_TYPES)}")
        if type(item) is not expected:
            raise doc.error(("config", key), f"must be {expected.__name__}, got {item!r}")
    try:
        return CloudConfig(**value)
    except (TypeError, ValueError) as error:
        raise doc.error(("config",), str(error)) from None


def _record(doc: _Document, at: Path_, item: Any, cls: type[Any], required: tuple[str, ...]) -> Any:
    if not isinstance(item, dict):
        raise doc.error(at, "must be a mapping")
    allowed = {f.name for f in attrs.fields(cls)}
    for key in item:
        if key not in allowed:
            raise doc.error((*at, key), f"unknown key; one of {', '.join(sorted(allowed))}")
    for key in required:
        if key not in item:
            raise doc.error(at, f"missing key {key!r}")
    for field in attrs.fields(cls):
        if field.name in item and field.type in ("int", "int | None"):
            value = item[field.name]
            if not (value is None and "None" in str(field.type)) and (
                type(value) is not int or value < 0
            ):
                raise doc.error((*at, field.name), f"must be a non-negative integer, got {value!r}")
    try:
        return cls(**{k: (str(v) if k in ("name", "id") else v) for k, v in item.items()})
    except (TypeError, ValueError) as error:
        raise doc.error(at, str(error)) from None


_INSTANCE_KEYS: Final = {
    "name",
    "flavor",
    "host",
    "project",
    "vm_state",
    "task_state",
    "locked",
    "locked_by",
}


def _instance(
    doc: _Document, index: int, item: Any, hosts: set[str], flavors: set[str]
) -> dict[str, Any]:
    at: Path_ = ("instances", index)
    if not isinstance(item, dict):
        raise doc.error(at, "must be a mapping")
    for key in item:
        if key not in _INSTANCE_KEYS:
            raise doc.error((*at, key), f"unknown key; one of {', '.join(sorted(_INSTANCE_KEYS))}")
    for key in ("name", "flavor", "host"):
        if key not in item:
            raise doc.error(at, f"missing key {key!r}")
    if item["host"] not in hosts:
        raise doc.error((*at, "host"), f"unknown host {item['host']!r}")
    if item["flavor"] not in flavors:
        raise doc.error((*at, "flavor"), f"unknown flavor {item['flavor']!r}")
    result = {
        "name": str(item["name"]),
        "flavor": str(item["flavor"]),
        "host": str(item["host"]),
        "project": str(item.get("project", "demo")),
        "locked": item.get("locked", False),
        "locked_by": item.get("locked_by"),
    }
    try:
        result["vm_state"] = VmState(item.get("vm_state", "active"))
    except ValueError:
        choices = ", ".join(v.value for v in VmState)
        raise doc.error((*at, "vm_state"), f"unknown vm_state; one of {choices}") from None
    task = item.get("task_state")
    try:
        result["task_state"] = None if task is None else TaskState(task)
    except ValueError:
        choices = ", ".join(t.value for t in TaskState)
        raise doc.error((*at, "task_state"), f"unknown task_state; one of {choices}") from None
    if not isinstance(result["locked"], bool):
        raise doc.error((*at, "locked"), "must be true or false")
    if result["locked_by"] not in (None, "owner", "admin"):
        raise doc.error((*at, "locked_by"), "must be owner or admin")
    return result


def _step(doc: _Document, index: int, item: Any, hosts: set[str]) -> dict[str, Any]:
    at: Path_ = ("steps", index)
    if not isinstance(item, dict):
        raise doc.error(at, "must be a mapping with an 'op' key")
    op = item.get("op")
    if op not in SUPPORTED_OPS:
        raise doc.error((*at, "op"), f"unknown operation {op!r}; one of {', '.join(SUPPORTED_OPS)}")
    allowed = SUPPORTED_OPS[op] | {"op"}
    for key in item:
        if key not in allowed:
            raise doc.error(
                (*at, key), f"unknown key for {op}; one of {', '.join(sorted(allowed))}"
            )
    for key in sorted(REQUIRED_OP_KEYS.get(op, {"instance"})):
        if key not in item:
            raise doc.error(at, f"{op} needs the key {key!r}")
    if "instance" in item and not isinstance(item["instance"], str):
        raise doc.error((*at, "instance"), "must be an instance name")
    if item.get("as", "admin") not in ("admin", "owner"):
        raise doc.error((*at, "as"), "must be admin or owner")
    if "host" in item and op != "migrate" and item["host"] not in hosts:
        raise doc.error((*at, "host"), f"unknown host {item['host']!r}")
    if op == "fault":
        _check_fault(doc, at, item)
    if op == "advance_clock" and (type(item["seconds"]) not in (int, float) or item["seconds"] < 0):
        raise doc.error((*at, "seconds"), "must be a non-negative number")
    return {str(k): v for k, v in item.items()}


def _check_fault(doc: _Document, at: Path_, item: dict[str, Any]) -> None:
    mode = item.get("mode", "raise")
    if mode not in FAULT_MODES:
        raise doc.error((*at, "mode"), f"unknown mode {mode!r}; one of {', '.join(FAULT_MODES)}")
    calls = KINDS if mode == "lose" else VERBS
    if item["call"] not in calls:
        what = "message kind" if mode == "lose" else "driver call"
        raise doc.error(
            (*at, "call"), f"unknown {what} {item['call']!r}; one of {', '.join(calls)}"
        )
    times = item.get("times", 1)
    if type(times) is not int or times < 1:
        raise doc.error((*at, "times"), "must be a positive integer")
    if not isinstance(item.get("rollback", False), bool):
        raise doc.error((*at, "rollback"), "must be true or false")


# --- running ---------------------------------------------------------------------------


def build_cloud(scenario: Scenario) -> Cloud:
    """The fake cloud a scenario describes, with its instances in their start states."""
    # A scenario host is a host of Nova's fake driver, which reports no free disk of its own
    # (disk_available_least 0) unless the file says otherwise.
    hosts = [
        h if h.disk_available_least_gb is not None else attrs.evolve(h, disk_available_least_gb=0)
        for h in scenario.hosts
    ]
    cloud = Cloud.build(hosts, scenario.flavors, scenario.projects, config=scenario.config)
    for spec in scenario.instances:
        cloud.boot(
            spec["name"],
            spec["flavor"],
            spec["host"],
            spec["project"],
            vm_state=spec["vm_state"],
            task_state=spec["task_state"],
            locked=spec["locked"],
            locked_by=spec["locked_by"],
        )
    return cloud


def _call(cloud: Cloud, step: dict[str, Any]) -> Operation:
    ref = step["instance"]
    # An unknown name is the API's business (InstanceNotFound), not an invalid file.
    known = {i.name: i.project_id for i in cloud.instances()}
    owner = Caller.owner(known.get(ref, "demo"))
    caller = owner if step.get("as", "admin") == "owner" else Caller.admin()
    calls: dict[str, Callable[[], Operation]] = {
        "migrate": lambda: cloud.migrate(ref, step.get("host"), caller),
        "resize": lambda: cloud.resize(ref, step["flavor"], caller),
        "confirm_resize": lambda: cloud.confirm_resize(ref, caller),
        "revert_resize": lambda: cloud.revert_resize(ref, caller),
        "stop": lambda: cloud.stop(ref, caller),
        "start": lambda: cloud.start(ref, caller),
        "lock": lambda: cloud.lock(ref, caller),
        "unlock": lambda: cloud.unlock(ref, caller),
        "delete": lambda: cloud.delete(ref, caller),
        "abort_migration": lambda: cloud.abort_migration(ref, caller),
    }
    return calls[step["op"]]()


def _cloud_op(cloud: Cloud, step: dict[str, Any]) -> None:
    """Run a step that is not a request: a fault, a restart, the clock."""
    op = step["op"]
    if op == "fault":
        if step.get("mode", "raise") == "lose":
            cloud.lose_next(step["call"], step["host"], step.get("times", 1))
            return
        assert cloud.hypervisor is not None
        cloud.hypervisor.arm(
            FakeFault(
                host=step["host"],
                call=step["call"],
                mode=FaultMode(step.get("mode", "raise")),
                times=step.get("times", 1),
                message=step.get("message", "injected fault"),
                rollback=step.get("rollback", False),
                timeout=float(cloud.config.shutdown_timeout),
            )
        )
    elif op == "restart_compute":
        cloud.restart_compute(step["host"])
    else:
        cloud.advance_clock(step["seconds"])
    cloud.run()


def run_scenario(scenario: Scenario) -> dict[str, Any]:
    """Run every step (each until the cloud settles) and return the output document."""
    cloud = build_cloud(scenario)
    hypervisor = cloud.hypervisor
    assert hypervisor is not None
    first_call = len(hypervisor.calls)
    results: list[dict[str, Any]] = []
    for step in scenario.steps:
        entry: dict[str, Any] = {k: v for k, v in step.items() if k in ("op", "instance", "host")}
        if step["op"] in CLOUD_OPS:
            if "seconds" in step:
                entry["seconds"] = step["seconds"]
            _cloud_op(cloud, step)
            entry.update(ok=True, error=None)
            results.append(entry)
            continue
        try:
            operation = _call(cloud, step)
        except ColdmigError as error:
            entry.update(ok=False, error={"type": type(error).__name__, "message": str(error)})
            results.append(entry)
            continue
        result = operation.wait()
        cloud.run()
        if result.ok:
            entry.update(ok=True, error=None)
        else:
            entry.update(
                ok=False,
                error={"type": result.error_type, "message": result.error_message},
            )
            entry["async"] = True
        results.append(entry)
    return describe(cloud, results, first_call)


def describe(cloud: Cloud, steps: list[dict[str, Any]], first_call: int = 0) -> dict[str, Any]:
    """The output document of the scenario contract for ``cloud`` as it is now."""
    names = {i.uuid: i.name for i in cloud.instances()}
    hypervisor = cloud.hypervisor
    calls = hypervisor.calls[first_call:] if hypervisor is not None else []
    return {
        "steps": steps,
        "instances": {
            i.name: {
                "vm_state": i.vm_state.value,
                "task_state": None if i.task_state is None else i.task_state.value,
                "power_state": i.power_state.label,
                "host": i.host,
                "flavor": i.flavor,
                "old_flavor": i.old_flavor,
                "new_flavor": i.new_flavor,
                "locked": i.locked,
                "progress": i.progress,
            }
            for i in cloud.instances()
        },
        "migrations": [
            {
                "id": m.id,
                "instance": names.get(m.instance_uuid, m.instance_uuid),
                "type": m.migration_type.value,
                "status": m.status.value,
                "source_compute": m.source_compute,
                "dest_compute": m.dest_compute,
            }
            for m in cloud.migrations()
        ],
        "usage": {host: used.as_dict() for host, used in cloud.usage().items()},
        "domains": cloud.domains(),
        "driver_calls": [
            {"host": c.host, "call": c.call, "instance": names.get(c.instance, c.instance)}
            for c in calls
        ],
        "notifications": [n.event_type for n in cloud.notifications()],
        "actions": {
            i.name: [
                {
                    "action": a.action,
                    "events": [{"event": e.event, "result": e.result.value} for e in a.events],
                }
                for a in cloud.actions(i.uuid)
            ]
            for i in cloud.instances()
        },
        "faults": {
            i.name: [{"type": f.exception_type, "message": f.message} for f in cloud.faults(i.uuid)]
            for i in cloud.instances()
            if cloud.faults(i.uuid)
        },
    }


def match_expectations(expected: Any, actual: Any, at: str = "") -> list[str]:
    """Every difference between ``expected`` (partial) and ``actual``, as readable lines."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{at or '(top)'}: expected a mapping, got {actual!r}"]
        problems: list[str] = []
        for key, value in expected.items():
            here = f"{at}.{key}" if at else str(key)
            if key not in actual:
                problems.append(f"{here}: missing (expected {value!r})")
            else:
                problems.extend(match_expectations(value, actual[key], here))
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{at}: expected a list, got {actual!r}"]
        if len(expected) != len(actual):
            return [
                f"{at}: expected {len(expected)} items {expected!r}, got {len(actual)}: {actual!r}"
            ]
        problems = []
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            problems.extend(match_expectations(want, got, f"{at}[{index}]"))
        return problems
    if expected != actual or (
        type(expected) is not type(actual) and not _numeric(expected, actual)
    ):
        return [f"{at}: expected {expected!r}, got {actual!r}"]
    return []


def _numeric(a: Any, b: Any) -> bool:
    # A bool is an int to Python, not to an expectation: 1 must not match True.
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
