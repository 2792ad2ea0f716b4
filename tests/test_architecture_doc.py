"""docs/architecture.md stays true: its layout table is the package's tree, and its
generated sections (the declared hops, one migrate traced hop by hop) are what the code
declares and does now.

The generated sections sit between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->``. When a test here fails because the code changed on
purpose, rewrite them with::

    .venv/bin/python -m tests.test_architecture_doc

The trace is observed, not restated: a store and a machine that record what the roles
do (every trigger fired, every compare-and-swap save, every message sent) run one
migrate and its confirm on a two-host fake cloud, step by step.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import attrs

from coldmig_fsm import ComputeService, Conductor, Flavor, Host
from coldmig_fsm.drivers.base import HypervisorDriver
from coldmig_fsm.drivers.fake import FakeHypervisor
from coldmig_fsm.guards import GuardContext
from coldmig_fsm.machine import MACHINE, TABLE, Fired, Machine
from coldmig_fsm.messages import CONDUCTOR, Message
from coldmig_fsm.records import Instance, Migration
from coldmig_fsm.roles.api import ComputeAPI
from coldmig_fsm.roles.compute import HOPS, Hop
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.states import MigrationStatus, TaskState
from coldmig_fsm.stores.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "src" / "coldmig_fsm"

_ROW = re.compile(r"^\|\s*`(?P<path>[^`]+)`\s*\|(?P<rest>.*)\|\s*$")
_SOURCE, _DEST = "host-a", "host-b"


# -- the layout table -------------------------------------------------------------------


def layout_entries(text: str) -> list[str]:
    """The paths in the first column of the table under ``## Layout``."""
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return [m.group("path") for line in section.splitlines() if (m := _ROW.match(line))]


def tree_entries(package: Path = PACKAGE) -> set[str]:
    """Every module and subpackage of ``package``, relative to it: ``x.py`` for a module,
    ``sub/`` for a subpackage (its ``__init__.py`` is the subpackage's row), and the
    top-level ``__init__.py`` (the public face)."""
    found = {"__init__.py"}
    for path in package.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        relative = path.relative_to(package)
        if relative.name == "__init__.py":
            if relative.parent != Path():
                found.add(f"{relative.parent.as_posix()}/")
        else:
            found.add(relative.as_posix())
    return found


def test_layout_table_is_the_tree() -> None:
    listed = layout_entries(DOC.read_text(encoding="utf-8"))
    assert len(listed) == len(set(listed)), "a path is listed twice in the layout table"
    tree = tree_entries()
    missing = sorted(tree - set(listed))
    gone = sorted(set(listed) - tree)
    assert not missing, f"add a row to docs/architecture.md's layout for: {missing}"
    assert not gone, f"docs/architecture.md's layout lists what does not exist: {gone}"


def test_layout_rows_say_what_each_is_for() -> None:
    section = DOC.read_text(encoding="utf-8").split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        row = _ROW.match(line)
        if row is not None:
            assert row.group("rest").strip(" |"), f"{row.group('path')}: say what it is for"


def test_tree_entries_name_modules_and_subpackages(tmp_path: Path) -> None:
    for name in ("__init__.py", "a.py", "sub/__init__.py", "sub/b.py", "sub/deep/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("", encoding="utf-8")
    assert tree_entries(tmp_path) == {"__init__.py", "a.py", "sub/", "sub/b.py", "sub/deep/"}


# -- what the roles do, recorded --------------------------------------------------------


class _RecordingStore(MemoryStore):
    """A memory store that notes each compare-and-swap save and each message sent."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[str] = []
        self.sent: list[Message] = []

    def save_instance(
        self,
        instance: Instance,
        expected_task_state: Collection[TaskState | None] | None = None,
    ) -> None:
        super().save_instance(instance, expected_task_state)
        if expected_task_state is not None:
            before = " or ".join(f"`{_task(t)}`" for t in expected_task_state)
            after = _task(instance.task_state)
            kept = after in {_task(t) for t in expected_task_state}
            self.saves.append(
                f"instance {before} (kept)" if kept else f"instance {before} → `{after}`"
            )

    def add_migration(self, migration: Migration) -> None:
        super().add_migration(migration)
        self.saves.append(f"migration created `{migration.status.value}`")

    def save_migration(
        self,
        migration: Migration,
        expected_status: Collection[MigrationStatus] | None = None,
    ) -> None:
        super().save_migration(migration, expected_status)
        if expected_status is not None:
            before = " or ".join(f"`{s.value}`" for s in expected_status)
            if migration.status in expected_status:
                self.saves.append(f"migration {before} (kept)")
            else:
                self.saves.append(f"migration {before} → `{migration.status.value}`")

    def push_message(self, message: Message) -> None:
        super().push_message(message)
        self.sent.append(message)


class _RecordingMachine(Machine):
    """The machine of :data:`TABLE`, noting each trigger that fired."""

    def __init__(self) -> None:
        super().__init__(TABLE)
        self.fired: list[str] = []

    def fire(
        self,
        trigger: str,
        ctx: GuardContext,
        effect: Any = None,
        migration_status: MigrationStatus | None = None,
    ) -> Fired:
        fired = super().fire(trigger, ctx, effect, migration_status)
        self.fired.append(trigger)
        return fired


def _task(task_state: TaskState | None) -> str:
    return "null" if task_state is None else task_state.value


@attrs.frozen
class TracedHop:
    """One hop of the trace, as observed."""

    number: int
    message: str
    runs_on: str
    declared: str
    triggers: tuple[str, ...]
    saves: tuple[str, ...]
    driver_calls: tuple[str, ...]
    sent: tuple[str, ...]
    instance: str
    migration: str
    claims: str
    notifications: tuple[str, ...]
    events: tuple[str, ...]


def _declared_hop(kind: str) -> Hop | None:
    return next((hop for hop in HOPS if hop.name == kind), None)


def _hop_module(hop: Hop) -> str:
    """The module that declares ``hop`` (the one whose globals hold it)."""
    return next(
        name
        for name, module in sys.modules.items()
        if name.startswith("coldmig_fsm.roles.compute.") and hop in vars(module).values()
    )


def _declared_by(role: type, name: str) -> str:
    """``Class.method`` (``module``) of a role's handler, or the hop's declaration."""
    hop = _declared_hop(name) if role is ComputeService else None
    if hop is not None:
        module = sys.modules[_hop_module(hop)]
        constant = next(k for k, v in vars(module).items() if v is hop)
        where = module.__name__
    else:
        handler = getattr(role, name)
        constant, where = handler.__qualname__, handler.__module__
    return f"`{constant}` ({_module_path(where)})"


def _module_path(module: str) -> str:
    return module.removeprefix("coldmig_fsm.").replace(".", "/") + ".py"


def _where(message: Message, migration: Migration | None) -> str:
    if message.destination == CONDUCTOR:
        return "conductor"
    host = message.destination.partition(":")[2]
    side = ""
    if migration is not None:
        side = {migration.source_compute: " (source)", migration.dest_compute: " (dest)"}.get(
            host, ""
        )
    return f"compute `{host}`{side}"


class _Tracer:
    """A two-host fake cloud whose store and machine record; one row per hop."""

    def __init__(self) -> None:
        self.fake = FakeHypervisor()
        drivers: dict[str, HypervisorDriver] = {h: self.fake.add_host(h) for h in (_SOURCE, _DEST)}
        self.store = _RecordingStore()
        self.machine = _RecordingMachine()
        self.cloud = Cloud(drivers, store=self.store, machine=self.machine)
        for host in (_SOURCE, _DEST):
            self.store.put_host(Host(host, 8, 16384, 200))
        self.store.put_flavor(Flavor("m1.tiny", 1, 512, 1))
        self.vm = self.cloud.boot("vm1", flavor="m1.tiny", host=_SOURCE)
        self.rows: list[TracedHop] = []
        self._mark()

    def _mark(self) -> None:
        self.machine.fired.clear()
        self.store.saves.clear()
        self.store.sent.clear()
        self._calls = len(self.fake.calls)
        self._notes = len(self.store.list_notifications())
        self._events = self._all_events()

    def _all_events(self) -> list[str]:
        """The instance's actions opened and their events, in order."""
        return [
            entry
            for action in self.store.list_actions(self.vm.uuid)
            for entry in (
                f"action `{action.action}` opened",
                *(f"`{e.event}`" for e in action.events),
            )
        ]

    def _migration(self) -> Migration | None:
        found = self.store.list_migrations(self.vm.uuid)
        return found[-1] if found else None

    def record(self, message: str, to: Message | None, declared: str) -> None:
        instance = self.cloud.instance("vm1")
        migration = self._migration()
        consumers = {"instance": self.vm.uuid}
        if migration is not None:
            consumers["migration"] = migration.uuid
        held = sorted(
            (host, name)
            for name, consumer in consumers.items()
            for host in self.store.allocations(consumer)
        )
        seen = Counter(self._events)
        events = []
        for entry in self._all_events():  # what is new, wherever it was appended
            if seen[entry]:
                seen[entry] -= 1
            else:
                events.append(entry)
        self.rows.append(
            TracedHop(
                number=len(self.rows) + 1,
                message=message,
                runs_on="API" if to is None else _where(to, migration),
                declared=declared,
                triggers=tuple(dict.fromkeys(self.machine.fired)),
                saves=tuple(self.store.saves),
                driver_calls=tuple(
                    f"`{c.call}` on `{c.host}`" for c in self.fake.calls[self._calls :]
                ),
                sent=tuple(f"`{m.kind}` → {_where(m, migration)}" for m in self.store.sent),
                instance=(
                    f"`{instance.vm_state.value}` / `{_task(instance.task_state)}` / "
                    f"`{instance.host}`"
                ),
                migration="—" if migration is None else f"`{migration.status.value}`",
                claims=", ".join(f"`{host}`: {name}" for host, name in held) or "—",
                notifications=tuple(
                    n.event_type for n in self.store.list_notifications()[self._notes :]
                ),
                events=tuple(events),
            )
        )
        self._mark()

    def request(self, op: str) -> None:
        """One API request (``migrate``, ``confirm_resize``), recorded as a hop."""
        getattr(self.cloud, op)("vm1")
        self.record(f"API `{op}`", None, _declared_by(ComputeAPI, op))

    def deliver(self) -> Iterator[Message]:
        """Deliver every message, one hop at a time, recording each."""
        while True:
            message = self.cloud.step()
            if message is None:
                return
            role: type = Conductor if message.destination == CONDUCTOR else ComputeService
            self.record(f"`{message.kind}`", message, _declared_by(role, message.kind))
            yield message


def trace() -> list[TracedHop]:
    """One migrate then its confirm, hop by hop, as the code does them now."""
    tracer = _Tracer()
    tracer.request("migrate")
    for _ in tracer.deliver():
        pass
    tracer.request("confirm_resize")
    for _ in tracer.deliver():
        pass
    return tracer.rows


def _cell(items: tuple[str, ...], code: bool = False) -> str:
    if not items:
        return "—"
    return "<br>".join(f"`{i}`" if code else i for i in items)


def trace_markdown(rows: list[TracedHop] | None = None) -> str:
    """The two tables of the traced migrate: what each hop does, and what it leaves."""
    rows = trace() if rows is None else rows
    lines = [
        "| # | message | runs on | declared by | triggers fired | compare-and-swaps "
        "| driver call | sends |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.number} | {r.message} | {r.runs_on} | {r.declared} "
            f"| {_cell(r.triggers, code=True)} | {_cell(r.saves)} | {_cell(r.driver_calls)} "
            f"| {_cell(r.sent)} |"
        )
    lines += [
        "",
        "| # | instance: vm_state / task_state / host | migration | claims (host: consumer) "
        "| notifications | action events |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.number} | {r.instance} | {r.migration} | {r.claims} "
            f"| {_cell(r.notifications, code=True)} | {_cell(r.events)} |"
        )
    return "\n".join(lines) + "\n"


def hops_markdown() -> str:
    """The declared hops (``roles.compute.HOPS``): one row each."""
    lines = [
        "| hop | runs on | trigger | driver call | notifications | action event "
        "| if the driver call fails |",
        "|---|---|---|---|---|---|---|",
    ]
    for hop in HOPS:
        triggers = [t for t in (hop.begin, hop.trigger) if t is not None]
        chosen = " (or another its `choose` picks)" if hop.choose is not None else ""
        notes = [n for n in (*hop.announce, hop.start, hop.end) if n is not None]
        lines.append(
            f"| `{hop.name}` | {hop.side.value} | {', '.join(f'`{t}`' for t in triggers)}"
            f"{chosen} | {'—' if hop.calls is None else f'`{hop.calls}`'} "
            f"| {_cell(tuple(notes), code=True)} | `{hop.event}` "
            f"| `{hop.on_failure.name}`: {hop.on_failure.value} |"
        )
    return "\n".join(lines) + "\n"


GENERATED = {"hops": hops_markdown, "trace": trace_markdown}


def _region(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {name} -->\n)(?P<body>.*?)(<!-- end generated: {name} -->)",
        re.DOTALL,
    )


def generated_section(text: str, name: str) -> str:
    found = _region(name).search(text)
    assert found is not None, f"docs/architecture.md has no generated section {name!r}"
    return found.group("body")


def regenerate(text: str) -> str:
    """``text`` with every generated section written anew."""
    for name, make in GENERATED.items():
        body = make()

        def replace(found: re.Match[str], body: str = body) -> str:
            return found.group(1) + body + found.group(3)

        text = _region(name).sub(replace, text)
    return text


# -- the generated sections -------------------------------------------------------------


def test_traced_migrate_is_what_the_code_does_now() -> None:
    committed = generated_section(DOC.read_text(encoding="utf-8"), "trace")
    assert committed == trace_markdown(), "run `.venv/bin/python -m tests.test_architecture_doc`"


def test_declared_hops_table_is_not_stale() -> None:
    committed = generated_section(DOC.read_text(encoding="utf-8"), "hops")
    assert committed == hops_markdown(), "run `.venv/bin/python -m tests.test_architecture_doc`"


def test_traced_hops_are_their_declarations() -> None:
    """Each traced hop that has a declaration did what it declares: its triggers (the
    ``begin`` one, then its own or one of the rules its ``choose`` may pick), its driver
    call on its own host, its notifications and its action event."""
    rows = trace()
    kinds = [r.message for r in rows]
    assert kinds == [
        "API `migrate`",
        "`migrate_server`",
        "`prep_resize`",
        "`resize_instance`",
        "`finish_resize`",
        "API `confirm_resize`",
        "`confirm_resize`",
    ]
    declared = 0
    for row in rows:
        for trigger in row.triggers:
            MACHINE.rule(trigger)  # every trigger fired is a rule of the table
        hop = _declared_hop(row.message.strip("`"))
        if hop is None:
            continue
        declared += 1
        begun = (hop.begin,) if hop.begin is not None else ()
        assert row.triggers[: len(begun)] == begun
        last = row.triggers[-1]
        assert last == hop.trigger or (
            hop.choose is not None and MACHINE.rule(last).role is hop.side
        )
        host = row.runs_on.split("`")[1]
        assert row.driver_calls == (() if hop.calls is None else (f"`{hop.calls}` on `{host}`",))
        assert row.events == (f"`{hop.event}`",)
        declared_notes = [n for n in (*hop.announce, hop.start, hop.end) if n]
        assert declared_notes == [n for n in row.notifications if n in declared_notes]
    assert declared == 4  # prep_resize, resize_instance, finish_resize, confirm_resize


def test_each_compute_hop_calls_only_its_own_host() -> None:
    for row in trace():
        if row.runs_on.startswith("compute"):
            host = row.runs_on.split("`")[1]
            assert all(call.endswith(f"`{host}`") for call in row.driver_calls), row
        else:
            assert row.driver_calls == (), f"{row.runs_on} calls a driver: {row}"


if __name__ == "__main__":
    DOC.write_text(regenerate(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"rewrote the generated sections of {DOC.relative_to(ROOT)}")
