"""Differential conformance: the same scenario through Nova 34 and through this library.

:func:`compare` is pure: it takes our output and Nova's (both in the scenario-format
shape) and returns every :class:`Difference`, each marked *deliberate* when it matches a
rule of :data:`DELIBERATE` (written down, with the reason, in ``docs/conformance.md``).
:func:`run_nova` runs ``conformance/nova_adapter.py`` with the interpreter of the Nova
virtualenv (``make conformance-env``), one process for all files.

What is compared: ``steps`` (op, instance, ok, error type, async), ``instances`` (every
key this library prints), ``migrations``, ``usage``, ``domains``, ``notifications``,
``actions`` and ``driver_calls`` (host, call, instance). Keys only one side prints are
extras and are not compared.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

__all__ = ["DELIBERATE", "Deviation", "Difference", "compare", "default_adapter", "run_nova"]

COMPARED: Final = (
    "steps",
    "instances",
    "migrations",
    "usage",
    "domains",
    "notifications",
    "actions",
    "driver_calls",
)


@attrs.frozen
class Difference:
    """One place where the outputs differ; ``deliberate`` names the rule that allows it."""

    path: str
    ours: Any
    nova: Any
    deliberate: str | None = None

    def describe(self) -> str:
        tag = f" (deliberate: {self.deliberate})" if self.deliberate else ""
        return f"{self.path}: ours {self.ours!r}, Nova {self.nova!r}{tag}"


@attrs.frozen
class Seen:
    """One difference as a rule sees it: where, both values, both whole outputs."""

    path: str
    ours: Any
    nova: Any
    our_output: dict[str, Any]
    nova_output: dict[str, Any]

    def has_step(self, op: str) -> bool:
        return any(step.get("op") == op for step in self.our_output.get("steps", []))


@attrs.frozen
class Deviation:
    """A documented, deliberate difference: ``applies(seen)`` says when it is this one."""

    name: str
    reason: str
    applies: Callable[[Seen], bool]


def _paused_power_state(seen: Seen) -> bool:
    if not seen.path.endswith(".power_state"):
        return False
    name = seen.path.split(".")[1]
    return bool(seen.our_output["instances"].get(name, {}).get("vm_state") == "paused")


def _deleted(output: dict[str, Any]) -> set[str]:
    return {
        name
        for name, fields in (output.get("instances") or {}).items()
        if (fields or {}).get("vm_state") == "deleted"
    }


def _is_subsequence(short: Sequence[Any], long: Sequence[Any]) -> bool:
    remaining = iter(long)
    return all(any(item == other for other in remaining) for item in short)


def _delete_cleans_every_host(seen: Seen) -> bool:
    """Ours removed a deleted instance's guest from hosts where Nova left it."""
    if not seen.has_step("delete"):
        return False
    gone = _deleted(seen.our_output)
    ours, nova = seen.ours, seen.nova
    if seen.path.startswith("domains.") and isinstance(ours, list) and isinstance(nova, list):
        leaked = set(nova) - set(ours)
        return bool(leaked) and leaked <= gone and set(ours) <= set(nova)
    if seen.path == "driver_calls" and isinstance(ours, list) and isinstance(nova, list):
        # Ours is Nova's calls plus destroy calls of deleted instances, in order.
        extra = list(ours)
        for call in nova:
            if call in extra:
                extra.remove(call)
        return (
            bool(extra)
            and all(c[1] == "destroy" and c[2] in gone for c in extra)
            and _is_subsequence(nova, ours)
        )
    return False


def _injected_error(seen: Seen) -> bool:
    return (
        seen.path.endswith(".error")
        and seen.ours in ("HypervisorError", "DriverTimeout")
        and seen.nova == "InjectedDriverError"
    )


def _concurrent_order(seen: Seen) -> bool:
    return (
        seen.path == "notifications"
        and seen.has_step("advance_clock")
        and isinstance(seen.ours, list)
        and isinstance(seen.nova, list)
        and sorted(seen.ours) == sorted(seen.nova)
    )


def _not_expressible(seen: Seen) -> bool:
    return bool(seen.nova_output.get("nova_adapter", {}).get("unsupported"))


def _recovery(seen: Seen) -> bool:
    return seen.has_step("restart_compute")


DELIBERATE: Final[tuple[Deviation, ...]] = (
    Deviation(
        "paused-power-state",
        "Nova's fake driver reports `running` for a paused guest; the scenario format says "
        "`paused` (spec/scenario-format.md).",
        _paused_power_state,
    ),
    Deviation(
        "delete-cleans-every-host",
        "Deleting an instance after a failed move (a failed finish_migration or confirm, "
        "say) removes its guest and disks from every host that still holds them; Nova "
        "destroys the guest on the instance's host only and leaks the other copy "
        "(spec: Beyond Nova).",
        _delete_cleans_every_host,
    ),
    Deviation(
        "injected-error-class",
        "A plain driver fault is `HypervisorError` here; the adapter injects its own "
        "`InjectedDriverError` into Nova's fake driver. Same failure, different class name.",
        _injected_error,
    ),
    Deviation(
        "concurrent-notification-order",
        "When one periodic run confirms several migrations, Nova handles them concurrently "
        "and their notifications interleave; here they run one after the other. Same "
        "notifications, another order.",
        _concurrent_order,
    ),
    Deviation(
        "not-expressible-on-nova",
        "The scenario uses something Nova cannot do or the adapter cannot inject (abort, "
        "crash and hang faults, lost messages); Nova's run stops being comparable there.",
        _not_expressible,
    ),
    Deviation(
        "recovery-never-stuck",
        "On restart Nova only recovers `resize_prep` and `resize_migrating`, and leaves "
        "`resize_migrated`, `resize_finish` and `resize_reverting` stuck; the spec asks "
        "that nothing stays stuck, so every busy instance is brought to a safe state and "
        "the recovery is recorded as an instance action.",
        _recovery,
    ),
)


def _steps(steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "op": s.get("op"),
            "instance": s.get("instance"),
            "ok": s.get("ok"),
            "error": (s.get("error") or {}).get("type"),
            "async": bool(s.get("async", False)),
        }
        for s in steps
    ]


def _migrations(migrations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("id", "instance", "type", "status", "source_compute", "dest_compute")
    return [{k: m.get(k) for k in keys} for m in migrations]


def _calls(calls: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [[c.get("host"), c.get("call"), c.get("instance")] for c in calls]


def _normalise(key: str, value: Any, like: Any) -> Any:
    if value is None:
        return None
    if key == "steps":
        return _steps(value)
    if key == "migrations":
        return _migrations(value)
    if key == "driver_calls":
        return _calls(value)
    if key == "instances" and isinstance(like, dict):
        return {
            name: {k: v for k, v in fields.items() if k in like.get(name, {})}
            for name, fields in value.items()
        }
    return value


def _diff(path: str, ours: Any, nova: Any) -> list[tuple[str, Any, Any]]:
    if isinstance(ours, dict) and isinstance(nova, dict):
        found = []
        for key in sorted(set(ours) | set(nova), key=str):
            found += _diff(f"{path}.{key}", ours.get(key), nova.get(key))
        return found
    if isinstance(ours, list) and isinstance(nova, list) and len(ours) == len(nova):
        found = []
        for index, (a, b) in enumerate(zip(ours, nova, strict=True)):
            found += _diff(f"{path}[{index}]", a, b)
        return found
    return [] if ours == nova else [(path, ours, nova)]


def compare(ours: dict[str, Any], nova: dict[str, Any]) -> list[Difference]:
    """Every difference between the two outputs, deliberate ones marked."""
    differences = []
    for key in COMPARED:
        mine = _normalise(key, ours.get(key), None)
        theirs = _normalise(key, nova.get(key), mine)
        found = _diff(key, mine, theirs)
        whole = _rule_for(Seen(key, mine, theirs, ours, nova)) if found else None
        if whole is not None:
            # A rule that covers the whole key (an order) reports it once.
            differences.append(Difference(key, mine, theirs, whole))
            continue
        for path, a, b in found:
            rule = _rule_for(Seen(path, a, b, ours, nova))
            differences.append(Difference(path, a, b, rule))
    return differences


def _rule_for(seen: Seen) -> str | None:
    return next((d.name for d in DELIBERATE if d.applies(seen)), None)


def default_adapter() -> Path:
    """``conformance/nova_adapter.py`` of this checkout (or of the working directory)."""
    here = Path(__file__).resolve().parents[3] / "conformance" / "nova_adapter.py"
    return here if here.is_file() else Path.cwd() / "conformance" / "nova_adapter.py"


def run_nova(files: Sequence[Path], python: Path, adapter: Path | None = None) -> dict[str, Any]:
    """Nova's output for each file (keyed by the path as given), from one adapter process.

    Raises:
        FileNotFoundError: the Nova interpreter or the adapter is missing.
        RuntimeError: the adapter failed; its stderr's tail is in the message.
    """
    script = adapter or default_adapter()
    for needed in (python, script):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} not found (run `make conformance-env`)")
    done = subprocess.run(
        [str(python), str(script), "--jsonl", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    results: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.strip():
            record = json.loads(line)
            results[record["file"]] = record["result"]
    if done.returncode != 0 or len(results) != len(files):
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise RuntimeError(f"the Nova adapter failed (exit {done.returncode}):\n{tail}")
    return results
