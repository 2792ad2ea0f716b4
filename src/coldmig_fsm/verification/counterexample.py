"""A model checker's counterexample as a scenario file: a bug found becomes a regression test.

:func:`to_scenario` writes the shortest trace of a
:class:`~coldmig_fsm.verification.model_check.CheckResult` as a scenario (the format of
``docs/scenarios.md``) that runs one hop at a time (``settle: false``) with every
invariant checked after each step (``invariants: true``), and whose ``expect`` block is
what the invariants require: ``violations: []``. Run on the code that has the bug, the
scenario reproduces the violation (its output lists it, exit 1); once the bug is fixed it
passes (exit 0). The runner judges each step with the model checker's own checks
(:func:`~coldmig_fsm.verification.explorer.check_step`), so the scenario states exactly
the property that was violated, not what the buggy run happened to do.

Each :class:`~coldmig_fsm.verification.explorer.Action` becomes steps:

============================  ==========================================================
action                        steps
============================  ==========================================================
an API operation              the request (``host`` for a migrate target, ``flavor`` for
                              a resize, ``as: owner`` where the explorers ask as the
                              owner)
``race``                      ``race`` with its two requests (a resize to the flavor the
                              explorers pick)
``step``                      ``deliver``
``step`` with a driver fault  ``fault`` on the call, for the delivered message's instance,
                              then ``deliver``
``step (message lost)``       ``fault`` with ``mode: lose`` for the message's kind and
                              host, then ``deliver``
``restart_compute``,          the step of that name (with the fault armed before it, if
``reconcile``,                it has one)
``advance_clock``
============================  ==========================================================

The start cloud must be one a scenario can describe (fake hosts, flavors, projects, the
instances' start states, the four scenario config keys); :func:`to_scenario` rebuilds it
from the file it wrote and refuses (``ValueError``) when the two differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs
import yaml

from coldmig_fsm.harness.scenario import build_cloud, parse_scenario
from coldmig_fsm.operations import OPERATIONS, Argument, Op
from coldmig_fsm.records import Caller, CloudConfig
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.verification.explorer import (
    API_OPS,
    Action,
    abstract,
    apply,
    caller_for,
    next_message,
    other_flavor,
)
from coldmig_fsm.verification.model_check import CheckResult

__all__ = ["SCENARIO_CONFIG", "to_scenario"]

SCENARIO_CONFIG: Final = (
    "allow_resize_to_same_host",
    "resize_confirm_window",
    "max_attempts",
    "shutdown_timeout",
)
"""The :class:`~coldmig_fsm.records.CloudConfig` fields a scenario's ``config`` sets; the
start cloud's other fields must have their defaults."""


def to_scenario(
    result: CheckResult, factory: Callable[[], Cloud], *, title: str | None = None
) -> str:
    """The counterexample of ``result`` as the text of a scenario file (YAML).

    Args:
        result: what :func:`~coldmig_fsm.verification.model_check.model_check` found.
        factory: builds the start cloud the check began from (the same factory): the
            trace is replayed on it to learn what each step delivers (a message's
            instance and destination, the flavor a race resizes to).
        title: a first comment line (default: how the file was made).

    Returns:
        the file's text: comments naming each action and the violations found, then
        ``settle: false``, ``invariants: true``, the start cloud, the steps (for a
        liveness counterexample, ending with a ``settle_all`` step: from the last
        state, everything must still end) and ``expect: {violations: []}``.

    Raises:
        ValueError: ``result`` has no counterexample, or the start cloud cannot be
            written as a scenario (a non-scenario config value, a store that is not
            what a scenario builds).
        RuntimeError: replaying the trace on ``factory()`` raised before its last action
            (the code changed since the check ran, or the start is not the same).
    """
    if result.counterexample is None:
        raise ValueError("no counterexample: nothing to write as a scenario")
    start = factory()
    document: dict[str, Any] = {"settle": False, "invariants": True}
    document.update(_start(start))
    document["steps"] = _steps(factory(), result.counterexample)
    if result.failed == "liveness":
        # What must hold from the last state: some run without new requests or faults
        # ends everything; the operator's run (settle_all) is the one written down.
        document["steps"].append({"op": "settle_all"})
    document["expect"] = {"violations": []}
    text = _dump(document, result, title)
    _check_start(text, start)
    return text


# --- the start cloud --------------------------------------------------------------------


def _start(cloud: Cloud) -> dict[str, Any]:
    defaults = CloudConfig()
    other = [
        f.name
        for f in attrs.fields(CloudConfig)
        if f.name not in SCENARIO_CONFIG
        and getattr(cloud.config, f.name) != getattr(defaults, f.name)
    ]
    if other:
        raise ValueError(f"the start cloud's config sets {other}: a scenario cannot")
    config = {
        name: getattr(cloud.config, name)
        for name in SCENARIO_CONFIG
        if getattr(cloud.config, name) != getattr(defaults, name)
    }
    store = cloud.store
    records = {h.name: h for h in store.list_hosts()}
    hosts = []
    for name in cloud.hosts:
        host = records[name]
        entry: dict[str, Any] = {
            "name": host.name,
            "vcpus": host.vcpus,
            "ram_mb": host.ram_mb,
            "disk_gb": host.disk_gb,
        }
        if not host.enabled:
            entry["enabled"] = False
        # A scenario host reports 0 free disk unless told: say what this one reports.
        entry["disk_available_least_gb"] = host.disk_available_least_gb
        hosts.append(entry)
    flavors = []
    for flavor in store.list_flavors():
        entry = {
            "id": flavor.id,
            "vcpus": flavor.vcpus,
            "ram_mb": flavor.ram_mb,
            "root_gb": flavor.root_gb,
        }
        if flavor.disabled:
            entry["disabled"] = True
        flavors.append(entry)
    projects = []
    for project_id in sorted({i.project_id for i in store.list_instances()}):
        project = store.get_project(project_id)
        if project is None:
            continue
        entry = {"id": project.id}
        entry.update({k: v for k in ("cores", "ram_mb") if (v := getattr(project, k)) is not None})
        projects.append(entry)
    instances = []
    for instance in store.list_instances():
        entry = {
            "name": instance.name,
            "flavor": instance.flavor,
            "host": instance.host,
            "project": instance.project_id,
            "vm_state": instance.vm_state.value,
        }
        if instance.task_state is not None:
            entry["task_state"] = instance.task_state.value
        if instance.locked:
            entry.update(locked=True, locked_by=instance.locked_by)
        instances.append(entry)
    return {
        **({"config": config} if config else {}),
        "hosts": hosts,
        "flavors": flavors,
        **({"projects": projects} if projects else {}),
        "instances": instances,
    }


def _projects(cloud: Cloud) -> list[Any]:
    """The projects of the instances (what a quota check reads)."""
    ids = sorted({i.project_id for i in cloud.store.list_instances()})
    return [cloud.store.get_project(project_id) for project_id in ids]


def _check_start(text: str, start: Cloud) -> None:
    """Refuse a file whose cloud is not ``start``: same records, same abstract state."""
    built = build_cloud(parse_scenario(text.encode(), "<counterexample>"))

    def hosts(cloud: Cloud) -> list[Any]:  # heartbeats are the clock's, not the host's
        return [attrs.evolve(h, heartbeat_at=None) for h in cloud.store.list_hosts()]

    differ = [
        what
        for what, read in (
            ("config", lambda c: c.config),
            ("hosts", hosts),
            ("flavors", lambda c: c.store.list_flavors()),
            ("projects", _projects),
            ("instances", lambda c: c.store.list_instances()),
            ("state", abstract),
        )
        if read(built) != read(start)
    ]
    if differ:
        raise ValueError(f"the start cloud cannot be written as a scenario: its {differ} differ")


# --- the steps --------------------------------------------------------------------------


def _request(cloud: Cloud, op: str, name: str, arg: str | None) -> dict[str, Any]:
    """A request's keys but its instance, as the explorers make it: their caller, their
    argument."""
    step: dict[str, Any] = {"op": op}
    spec = OPERATIONS[Op(op)]
    if arg is not None and spec.argument is not None:
        step[spec.argument.value] = arg
    if caller_for(op, cloud, name) != Caller.admin():
        step["as"] = "owner"
    return step


def _fault(fault: tuple[str, str, str], instance: str | None) -> dict[str, Any]:
    host, call, mode = fault
    step: dict[str, Any] = {"op": "fault", "host": host, "call": call}
    if mode == "rollback":
        step["rollback"] = True
    else:
        step["mode"] = mode
    if instance is not None:
        step["instance"] = instance
    return step


def _action_steps(cloud: Cloud, action: Action) -> list[dict[str, Any]]:
    """The steps of one action, on ``cloud`` as it is just before the action."""
    op = action.op
    if op in API_OPS:
        assert action.instance is not None
        request = _request(cloud, op, action.instance, action.arg)
        return [{"op": op, "instance": action.instance, **request}]
    if op == "race":
        assert action.instance is not None and action.arg is not None
        assert action.second is not None
        name = action.instance
        raced = []
        for raced_op in (action.arg, action.second):
            resizing = OPERATIONS[Op(raced_op)].argument is Argument.FLAVOR
            arg = other_flavor(cloud, name) if resizing else None
            raced.append(_request(cloud, raced_op, name, arg))
        return [{"op": "race", "instance": name, "first": raced[0], "second": raced[1]}]
    steps: list[dict[str, Any]] = []
    if op == "step":
        message = next_message(cloud)
        if message is not None and action.fault == "lose":
            lose: dict[str, Any] = {"op": "fault", "call": message.kind, "mode": "lose"}
            host = message.destination.partition(":")[2]
            if host:
                lose["host"] = host
            steps.append(lose)
        elif message is not None and isinstance(action.fault, tuple):
            names = {i.uuid: i.name for i in cloud.store.list_instances()}
            steps.append(_fault(action.fault, names.get(message.instance_uuid)))
        return [*steps, {"op": "deliver"}]
    if isinstance(action.fault, tuple):
        steps.append(_fault(action.fault, None))
    if op == "restart_compute":
        steps.append({"op": op, "host": action.arg})
    elif op == "reconcile":
        steps.append({"op": op})
    elif op == "advance_clock":
        seconds = float(action.arg or cloud.config.resize_confirm_window)
        steps.append({"op": op, "seconds": int(seconds) if seconds.is_integer() else seconds})
    else:
        raise ValueError(f"no scenario step for the action {op!r}")
    return steps


def _steps(cloud: Cloud, trace: tuple[Action, ...]) -> list[dict[str, Any]]:
    """Every action's steps, replaying the trace on ``cloud`` to know what each meets."""
    steps: list[dict[str, Any]] = []
    for index, action in enumerate(trace):
        steps += _action_steps(cloud, action)
        try:
            apply(cloud, action)
        except Exception as error:
            if index == len(trace) - 1:
                break  # the last action may be the violation itself (a race, an escape)
            raise RuntimeError(
                f"replaying the counterexample: action {index + 1} `{action}` raised"
                f" {type(error).__name__}: {error}"
            ) from error
    return steps


# --- the text ---------------------------------------------------------------------------


def _flow(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000))


def _dump(document: dict[str, Any], result: CheckResult, title: str | None) -> str:
    trace = result.counterexample or ()
    lines = [
        f"# {title or 'Found by the model checker (coldmig verify --emit-scenario).'}",
        f"# The shortest counterexample, {len(trace)} action(s):",
        *(f"#   {index}. {action}" for index, action in enumerate(trace, 1)),
        "# It violates:",
        *(f"#   {violation}" for violation in result.violations),
        "# Run one hop at a time with every invariant checked after each step; the expect",
        "# block is what the invariants require: no violation. It fails (exit 1) while the",
        "# bug is there and passes once it is fixed.",
    ]
    if result.failed == "liveness":
        lines += [
            "# A liveness counterexample: from its last state nothing settles. The last step,",
            "# settle_all, restarts what is down, reconciles and delivers everything: it must",
            "# leave no request pending and no instance busy.",
        ]
    lines = [" ".join(line.splitlines()) for line in lines]
    for key, value in document.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {_flow(item).strip()}" for item in value]
        elif isinstance(value, dict):  # `config: {resize_confirm_window: 60}`
            lines.append(f"{key}: {_flow(value).strip()}")
        else:  # `settle: false`
            lines.append(str(yaml.safe_dump({key: value}, default_flow_style=False)).strip())
    return "\n".join(lines) + "\n"
