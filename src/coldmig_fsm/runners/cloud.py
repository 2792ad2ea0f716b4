"""The facade: a whole cloud in one object, for harnesses, scripts and tests.

:class:`Cloud` wires the roles (API, conductor, one compute service per host) to one
store, one clock and the hypervisor drivers, and moves the messages between them. Every
operation returns an :class:`Operation` handle at once (guard errors are raised before
that, with nothing changed); :meth:`Operation.wait` delivers messages until the request
has settled. :meth:`Cloud.step` delivers exactly one message, so a test can stop between
any two hops, look, race another request in, and go on.

Liveness is the store's: a compute service is up when its host record says so
(:mod:`coldmig_fsm.roles.services`: not marked down, heartbeat recent enough). ``Cloud``
runs the services in-process and calls what they do for themselves, as Nova's service
framework calls them: :meth:`ComputeService.report_state` (registration once the host
record exists, then a heartbeat every ``report_interval`` seconds of the clock), called
again when the services said it is next due; :meth:`ComputeService.start` and
:meth:`ComputeService.init_host` when a service restarts. A crash marks its host down.
Which hosts are down is a lookup by the store's liveness index
(:meth:`~coldmig_fsm.stores.base.Store.down_hosts`), so a step costs the same whatever
the number of hosts.

Example::

    cloud = Cloud.build(
        hosts=[Host("host-a", 8, 16384, 200), Host("host-b", 8, 16384, 200)],
        flavors=[Flavor("m1.tiny", 1, 512, 1)],
    )
    vm = cloud.boot("vm1", flavor="m1.tiny", host="host-a")
    cloud.migrate("vm1").wait()          # -> OperationResult(outcome=succeeded)
    cloud.instance("vm1").vm_state       # VmState.RESIZED
    cloud.confirm_resize("vm1").wait()
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from coldmig_fsm import exceptions, messages
from coldmig_fsm.clock import Clock, ManualClock
from coldmig_fsm.drivers.base import HypervisorDriver
from coldmig_fsm.drivers.fake import FakeDriver, FakeHypervisor, SimulatedCrash
from coldmig_fsm.exceptions import (
    ColdmigError,
    ComputeHostNotFound,
    FlavorNotFound,
    InstanceExists,
    InstanceNotFound,
    NoValidHost,
)
from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.messages import CONDUCTOR, Message
from coldmig_fsm.operations import OPERATIONS, Op
from coldmig_fsm.records import (
    IMAGE_MIN_DISK,
    Caller,
    CloudConfig,
    Fault,
    Flavor,
    Host,
    Instance,
    InstanceAction,
    Migration,
    Notification,
    Outcome,
    Project,
    RequestRecord,
    Resources,
)
from coldmig_fsm.roles import claims, services
from coldmig_fsm.roles.api import ComputeAPI
from coldmig_fsm.roles.compute import ComputeService
from coldmig_fsm.roles.conductor import Conductor
from coldmig_fsm.roles.runtime import Runtime
from coldmig_fsm.states import PowerState, TaskState, VmState
from coldmig_fsm.stores.base import compute_destination
from coldmig_fsm.stores.memory import MemorySnapshot, MemoryStore, Store

__all__ = ["Cloud", "CloudSnapshot", "LostMessage", "Operation", "OperationResult", "Preflight"]

ADMIN = Caller.admin()

MAX_STEPS = 1_000
"""Default cap on the messages :meth:`Operation.wait` and :meth:`Cloud.run` deliver: far
more than any request needs (a move is six hops), so that a step that loops fails in about
a second, naming the request, instead of spinning for minutes."""


@attrs.frozen
class OperationResult:
    """How a request ended.

    ``outcome`` is ``succeeded``, ``rolled_back`` (failed, instance as before) or
    ``failed`` (instance needs attention); ``error_type`` is the public exception name.
    """

    request_id: str
    outcome: Outcome
    error_type: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED

    def error(self) -> ColdmigError | None:
        """The typed exception the request ended with, rebuilt from its name."""
        if self.error_type is None:
            return None
        cls = getattr(exceptions, self.error_type, None)
        if not (isinstance(cls, type) and issubclass(cls, ColdmigError)):
            cls = exceptions.HypervisorError
        if cls is exceptions.InstanceFaultRollback:
            return exceptions.InstanceFaultRollback(
                exceptions.HypervisorError(self.error_message or "")
            )
        return cls(self.error_message or "")

    def raise_for_error(self) -> None:
        """Raise the request's error, if it ended with one."""
        error = self.error()
        if error is not None:
            raise error


@attrs.define
class Operation:
    """A handle on one accepted request."""

    cloud: Cloud
    request_id: str
    action: str
    instance_uuid: str

    @property
    def result(self) -> OperationResult | None:
        """The result once settled, else ``None``."""
        record = self.cloud.store.get_request(self.request_id)
        if record is None or record.outcome is Outcome.PENDING:
            return None
        return _result(record)

    def wait(self, max_steps: int = MAX_STEPS) -> OperationResult:
        """Deliver messages until this request settles; return how it ended.

        When nothing more can be delivered and the request is still open (its next hop
        waits for a crashed compute service, or its message was lost) the result's
        outcome is ``pending`` with the error ``OperationPending``.

        Raises:
            RuntimeError: ``max_steps`` messages were delivered and the request has not
                settled (a step that loops); the message names the request.
        """
        result = self.result
        if result is not None:
            return result
        delivered: Message | None = None
        for _ in range(max_steps):
            delivered = self.cloud.step()
            if delivered is None:
                break
            # Only a step of this request can settle it; skip the read otherwise.
            if delivered.request_id == self.request_id:
                result = self.result
                if result is not None:
                    return result
        else:
            if self.result is None:
                raise self.cloud._still_busy(max_steps, delivered, self.request_id)
        result = self.result
        if result is not None:
            return result
        return OperationResult(
            self.request_id,
            Outcome.PENDING,
            "OperationPending",
            "the request cannot progress: a compute service it needs is down or its "
            "message was lost (restart_compute or reconcile settles it)",
        )


def _result(record: RequestRecord) -> OperationResult:
    return OperationResult(
        record.request_id, record.outcome, record.error_type, record.error_message
    )


@attrs.frozen
class Preflight:
    """What a migrate or resize would do now, found without changing anything.

    ``accepted``: the API would accept it (else ``error_type``/``message`` say why, as the
    exception would). ``host``: where the scheduler would send it, with ``alternates``;
    ``None`` with ``error_type`` ``NoValidHost`` when the API accepts but no host fits.
    """

    accepted: bool
    host: str | None = None
    alternates: tuple[str, ...] = ()
    error_type: str | None = None
    message: str | None = None

    @property
    def would_start(self) -> bool:
        return self.accepted and self.host is not None


@attrs.frozen
class LostMessage:
    """A fault between hops: the next ``times`` messages of ``kind`` (to ``host``) vanish."""

    kind: str
    host: str | None
    times: int = 1

    def matches(self, message: Message) -> bool:
        return message.kind == self.kind and (
            self.host is None or message.destination == f"compute:{self.host}"
        )


@attrs.frozen
class CloudSnapshot:
    """A cloud's changing state at one moment (:meth:`Cloud.snapshot`); opaque."""

    store: MemorySnapshot
    hypervisor: tuple[object, ...] | None
    now: dt.datetime
    losses: tuple[LostMessage, ...]
    losses_armed: int
    report_due: dt.datetime | None
    services: tuple[tuple[bool, dt.datetime | None], ...]  # each compute's report timer


class Cloud:
    """Roles, store, clock and drivers of one cloud, wired together.

    Args:
        drivers: one hypervisor driver per host name.
        store: where records live (default: a new :class:`MemoryStore`).
        config: Nova options (default: Nova's defaults).
        clock: time source (default: a :class:`ManualClock`, so runs are repeatable).
        machine: the state machine (default: :data:`coldmig_fsm.machine.MACHINE`).
    """

    def __init__(
        self,
        drivers: Mapping[str, HypervisorDriver],
        *,
        store: Store | None = None,
        config: CloudConfig | None = None,
        clock: Clock | None = None,
        machine: Machine = MACHINE,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.config = config if config is not None else CloudConfig()
        self.runtime = Runtime(self.store, self.clock, self.config, machine)
        self.api = ComputeAPI(self.runtime)
        self._drivers = dict(drivers)
        self.conductor = Conductor(self.runtime)
        self._computes = {
            host: ComputeService(self.runtime, driver) for host, driver in self._drivers.items()
        }
        self._losses: list[LostMessage] = []
        self.losses_armed = 0
        """How many :meth:`lose_next` calls were made: 0 means no message was lost."""
        # When the services' report_state is next due (None: at once). Only a timer: the
        # services decide what to report and when (liveness is in the host records).
        self._report_due: dt.datetime | None = None
        self._report_state()

    @classmethod
    def build(
        cls,
        hosts: Iterable[Host],
        flavors: Iterable[Flavor] = (),
        projects: Iterable[Project] = (),
        *,
        config: CloudConfig | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
        hypervisor: FakeHypervisor | None = None,
        machine: Machine = MACHINE,
    ) -> Cloud:
        """A cloud of fake hosts (the embedded default), with its flavors and projects."""
        hosts = list(hosts)
        fake = hypervisor if hypervisor is not None else FakeHypervisor()
        drivers: dict[str, HypervisorDriver] = {h.name: fake.add_host(h.name) for h in hosts}
        cloud = cls(drivers, store=store, config=config, clock=clock, machine=machine)
        cloud.hypervisor = fake
        with cloud.store.atomic():
            for host in hosts:
                cloud.store.put_host(host)
            for flavor in flavors:
                cloud.store.put_flavor(flavor)
            for project in projects:
                cloud.store.put_project(project)
        cloud._report_state()
        return cloud

    hypervisor: FakeHypervisor | None = None
    """The fake hypervisor behind a cloud made by :meth:`build` (else ``None``)."""

    # -- set-up ---------------------------------------------------------------------------

    def boot(
        self,
        name: str,
        flavor: str,
        host: str,
        project: str = "demo",
        *,
        vm_state: VmState = VmState.ACTIVE,
        task_state: TaskState | None = None,
        locked: bool = False,
        locked_by: str | None = None,
        uuid: str | None = None,
        image_min_disk_gb: int = 0,
    ) -> Instance:
        """Create an instance on ``host`` in any state (its guest and claim included).

        As Nova does at boot, the instance's system metadata records ``image_min_disk``:
        the larger of the image's ``min_disk`` (``image_min_disk_gb``) and the boot
        flavor's ``root_gb``. A resize below it is refused (``FlavorDiskSmallerThanMinDisk``).

        Every check is a lookup by key or index, whatever the number of instances.

        Raises:
            FlavorNotFound: no flavor ``flavor``.
            ComputeHostNotFound: no compute host ``host``.
            InstanceExists: an instance (deleted ones included) already has the name
                ``name``, or the uuid (given, or derived from the name).
        """
        found = self.store.get_flavor(flavor)
        if found is None:
            raise FlavorNotFound(f"Flavor {flavor} could not be found.")
        if host not in self._computes or self.store.get_host(host) is None:
            raise ComputeHostNotFound(f"Compute host {host} could not be found.")
        if self.store.find_instance(name) is not None:
            raise InstanceExists(f"Instance {name} already exists.")
        uuid = uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"coldmig:{name}"))
        try:
            taken = self.store.get_instance(uuid)
        except InstanceNotFound:
            pass
        else:
            raise InstanceExists(f"Instance {uuid} already exists (named {taken.name}).")
        power = PowerState.for_vm_state(vm_state)
        instance = Instance(
            uuid=uuid,
            name=name,
            project_id=project,
            host=host,
            flavor=flavor,
            vm_state=vm_state,
            task_state=task_state,
            power_state=power,
            locked=locked,
            locked_by=(locked_by or "admin") if locked else None,
            system_metadata={IMAGE_MIN_DISK: str(max(image_min_disk_gb, found.root_gb))},
        )
        driver = self._drivers[host]
        with self.store.atomic():
            self.store.add_instance(instance)
            if vm_state is not VmState.DELETED:
                claims.claim(self.store, instance.uuid, host, found.resources)
        if vm_state is not VmState.DELETED:
            if isinstance(driver, FakeDriver):
                driver.adopt(instance, found, power)
            else:
                driver.spawn(instance, found, power_on=power is PowerState.RUNNING)
        return instance

    # -- operations ---------------------------------------------------------------------

    def request(
        self,
        op: Op | str,
        ref: str,
        argument: str | None = None,
        caller: Caller = ADMIN,
    ) -> Operation:
        """Ask for any operation of :data:`~coldmig_fsm.operations.OPERATIONS` by name.

        ``argument`` is what the operation takes (``migrate``: an optional target host;
        ``resize``: the flavor). The named methods below are this with their arguments
        spelled out.

        Raises:
            ColdmigError: a guard refused; nothing changed.
            ValueError: an unknown operation, or a missing required argument.
        """
        spec = OPERATIONS[Op(op)]
        uuid = self._uuid(ref)
        request_id = self.api.request(spec.op, uuid, caller, argument)
        return Operation(self, request_id, spec.action, uuid)

    def migrate(self, ref: str, host: str | None = None, caller: Caller = ADMIN) -> Operation:
        """Cold-migrate (flavor unchanged), optionally to ``host``."""
        return self.request(Op.MIGRATE, ref, host, caller)

    def resize(self, ref: str, flavor: str, caller: Caller = ADMIN) -> Operation:
        return self.request(Op.RESIZE, ref, flavor, caller)

    def confirm_resize(self, ref: str, caller: Caller = ADMIN) -> Operation:
        return self.request(Op.CONFIRM_RESIZE, ref, caller=caller)

    def revert_resize(self, ref: str, caller: Caller = ADMIN) -> Operation:
        return self.request(Op.REVERT_RESIZE, ref, caller=caller)

    def preflight(
        self,
        ref: str,
        flavor: str | None = None,
        host: str | None = None,
        caller: Caller = ADMIN,
    ) -> Preflight:
        """Dry run of ``migrate`` (no ``flavor``) or ``resize``: accepted? where to?

        Runs the same guards and checks as the API and asks the scheduler, but writes
        nothing: no state, no record, no notification.
        """
        uuid = self._uuid(ref)
        try:
            if flavor is None:
                prepared = self.api.prepare_migrate(uuid, caller, host)
            else:
                prepared = self.api.prepare_resize(uuid, flavor, caller)
        except ColdmigError as error:
            return Preflight(False, error_type=type(error).__name__, message=str(error))
        instance = prepared.instance
        self._report_state()
        try:
            hosts = self.conductor.candidates(instance, flavor or instance.flavor, host)
        except NoValidHost as error:
            return Preflight(True, error_type=type(error).__name__, message=str(error))
        return Preflight(True, host=hosts[0], alternates=tuple(hosts[1:]))

    def abort_migration(self, ref: str, caller: Caller = ADMIN) -> Operation:
        """Cancel a move before ``finish_resize`` starts (not in Nova); admin only."""
        return self.request(Op.ABORT_MIGRATION, ref, caller=caller)

    def stop(self, ref: str, caller: Caller = ADMIN) -> Operation:
        return self.request(Op.STOP, ref, caller=caller)

    def start(self, ref: str, caller: Caller = ADMIN) -> Operation:
        return self.request(Op.START, ref, caller=caller)

    def delete(self, ref: str, caller: Caller = ADMIN) -> Operation:
        return self.request(Op.DELETE, ref, caller=caller)

    def lock(self, ref: str, caller: Caller = ADMIN) -> Operation:
        return self.request(Op.LOCK, ref, caller=caller)

    def unlock(self, ref: str, caller: Caller = ADMIN) -> Operation:
        return self.request(Op.UNLOCK, ref, caller=caller)

    # -- delivery -----------------------------------------------------------------------

    def pending(self) -> list[Message]:
        """Messages queued and not yet delivered, oldest first."""
        return self.store.pending_messages()

    def step(self) -> Message | None:
        """Deliver the oldest deliverable message to its role; return it (``None``: idle).

        Messages for a compute service that is down (:meth:`is_up`) wait in the queue
        until it is up again. A message armed to be lost (:meth:`lose_next`) is taken and
        dropped. A simulated crash in a driver call marks that host's compute service down.
        """
        self._report_state()
        return self._deliver(self._held())

    def _held(self) -> set[str]:
        """The destinations whose messages wait: the compute services that are down."""
        return {compute_destination(host) for host in services.down_hosts(self.runtime)}

    def _deliver(
        self, held: Collection[str] = (), *, destinations: Collection[str] | None = None
    ) -> Message | None:
        """Hand the oldest deliverable message (not for ``held``; for one of
        ``destinations`` when given) to its role (:meth:`Store.delivery
        <coldmig_fsm.stores.base.Store.delivery>`: the message is taken in the
        transaction of the handler's first write, so a handler that raises before it
        wrote, or whose first transaction rolls back, leaves it queued).

        A simulated crash loses the message it interrupted, as Nova's compute loses an
        RPC cast it had received (oslo.messaging acknowledges a cast before dispatching
        it): whatever the handler committed stays, the rest is for start-up recovery.
        """
        with self.store.delivery(held, destinations=destinations) as message:
            if message is None:
                return None
            for index, loss in enumerate(self._losses):
                if loss.matches(message):
                    self._losses[index] = attrs.evolve(loss, times=loss.times - 1)
                    self._losses = [x for x in self._losses if x.times > 0]
                    self.store.acknowledge()
                    return message
            try:
                if message.destination == CONDUCTOR:
                    self.conductor.handle(message)
                else:
                    self.compute(message.destination.partition(":")[2]).handle(message)
            except SimulatedCrash as crash:
                self.store.acknowledge()
                self._mark_down(crash.host)
        return message

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> CloudSnapshot:
        """Everything that can change in this cloud, as a value that does not change.

        The store's records and messages, the fake hypervisor's guests, faults and call
        log, the clock, the armed message losses and the services' framework state. Made
        for explorers that try many futures of one state (:meth:`restore` puts it back):
        immutable records are shared, and the store's tables until it writes them
        (:meth:`MemoryStore.snapshot`).

        Raises:
            TypeError: the store is not a :class:`MemoryStore`, or the clock not a
                :class:`ManualClock`, or a driver is not the fake hypervisor's (their
                state could not be taken back).
        """
        store, clock = self.store, self.clock
        if not isinstance(store, MemoryStore) or not isinstance(clock, ManualClock):
            raise TypeError("a Cloud snapshot needs a MemoryStore and a ManualClock")
        hypervisor = self.hypervisor
        if any(
            not isinstance(d, FakeDriver) or hypervisor is None or d._hv is not hypervisor
            for d in self._drivers.values()
        ):
            raise TypeError("a Cloud snapshot needs every driver to be its hypervisor's")
        return CloudSnapshot(
            store.snapshot(),
            None if hypervisor is None else hypervisor.snapshot(),
            clock.now(),
            tuple(self._losses),
            self.losses_armed,
            self._report_due,
            tuple(service.report_timer() for service in self._computes.values()),
        )

    def restore(self, snapshot: CloudSnapshot) -> None:
        """Put this cloud back as it was at ``snapshot`` (taken from this cloud or from
        one built the same way); ``snapshot`` stays usable.

        Raises:
            TypeError: as for :meth:`snapshot`.
        """
        store, clock = self.store, self.clock
        if not isinstance(store, MemoryStore) or not isinstance(clock, ManualClock):
            raise TypeError("a Cloud snapshot needs a MemoryStore and a ManualClock")
        store.restore(snapshot.store)
        if self.hypervisor is not None and snapshot.hypervisor is not None:
            self.hypervisor.restore(snapshot.hypervisor)
        clock.set(snapshot.now)
        self._losses = list(snapshot.losses)
        self.losses_armed = snapshot.losses_armed
        self._report_due = snapshot.report_due
        for service, timer in zip(self._computes.values(), snapshot.services, strict=True):
            service.set_report_timer(timer)

    # -- faults, restarts, time -----------------------------------------------------------

    def lose_next(self, kind: str, host: str | None = None, times: int = 1) -> None:
        """Drop the next ``times`` messages of ``kind`` (to ``host``): a fault between hops.

        ``kind`` is a message kind (``prep_resize``, ``resize_instance``,
        ``finish_resize``, ``confirm_resize``, ``revert_resize``, ``finish_revert_resize``,
        ``migrate_server``, ...). The instance then waits in its task_state until the
        host's compute service restarts or :meth:`reconcile` runs.
        """
        if kind not in messages.KINDS:
            raise ValueError(f"unknown message kind {kind!r}; one of {', '.join(messages.KINDS)}")
        self._losses.append(LostMessage(kind, host, times))
        self.losses_armed += 1

    def _mark_down(self, host: str) -> None:
        services.mark_down(self.runtime, host)

    def _report_state(self) -> None:
        """Call every service's :meth:`ComputeService.report_state` when one is due
        (what the services' framework's timer does): the services register and
        heartbeat themselves. Nothing else is read, so between two reports this costs
        one comparison. A manual clock moves only when told to, so a run on it
        heartbeats only after the clock moved."""
        due = self._report_due
        if due is not None and self.clock.now() < due:
            return
        next_due = [service.report_state() for service in self._computes.values()]
        known = [d for d in next_due if d is not None]
        self._report_due = min(known) if known and len(known) == len(next_due) else None

    def is_up(self, host: str) -> bool:
        """Whether ``host``'s compute service is up, as its host record says
        (:func:`coldmig_fsm.roles.services.is_up`: not marked down by a crash, and its
        heartbeat recent enough). A host without a record has nothing marking it down."""
        self._report_state()
        found = self.store.get_host(host)
        return found is None or services.is_up(
            found, self.clock.now(), self.config.service_down_time
        )

    def hosts_up(self) -> list[tuple[Host, bool]]:
        """Every host record, in the store's order, with :meth:`is_up` of its host: what
        an explorer reads of every host on every state, with the reports that are due
        done once (a second report at the same time writes nothing, and no report
        changes a record's ``name`` or ``up``)."""
        self._report_state()
        now, down_after = self.clock.now(), self.config.service_down_time
        return [(h, services.is_up(h, now, down_after)) for h in self.store.list_hosts()]

    def restart_compute(self, host: str) -> list[Instance]:
        """Start ``host``'s compute service again (:meth:`ComputeService.start`: its
        down mark is cleared and it registers anew, capabilities and a heartbeat); then
        its start-up recovery runs (:meth:`ComputeService.init_host`). Queued messages
        for the host are delivered by the next :meth:`step`/:meth:`run`. Returns the
        instances recovered, as saved.
        """
        service = self.compute(host)
        service.start()
        return self._recovered([service.host])

    def reconcile(self) -> list[Instance]:
        """Recover every instance left busy with no message on its way (a lost hop, or
        a process that died between hops): what a new orchestrator runs on start-up
        (:func:`coldmig_fsm.roles.compute.reconcile` over the running services: each
        one's :meth:`ComputeService.init_host`, here one at a time).

        Instances whose hosts' compute services are down are left to
        :meth:`restart_compute`. Returns the instances recovered, as saved.
        """
        return self._recovered(h for h in self.hosts if h in self._computes)

    def _recovered(self, hosts: Iterable[str]) -> list[Instance]:
        """The roles' recovery, one running service at a time; a simulated crash inside
        it (the fake driver's) takes that host down, as a crash in a step does, and a host
        it took down is not recovered after it."""
        recovered: list[Instance] = []
        self._report_state()
        for host in hosts:
            if not self.is_up(host):
                continue
            sent: list[Message] = []
            try:
                started = self.compute(host).init_host(sent)
            except SimulatedCrash as crash:
                self._mark_down(crash.host)
                continue
            self._finish_recoveries(sent)
            recovered += [self.store.get_instance(i.uuid) for i in started]
        return recovered

    def _finish_recoveries(self, sent: Sequence[Message]) -> None:
        """Deliver what a start-up recovery sent (its hops on other hosts) and the hops
        those requests send next, so that a restart returns with its recovery done,
        unless a crash or a lost message stops it. Only the destinations of those
        requests' messages are served (oldest first, as always); the rest of the queue
        waits for :meth:`step`. Their messages are read by index, as their instances'
        (a request's hops are messages of its instance), never the whole queue."""
        requests = {m.request_id for m in sent}
        instances = dict.fromkeys(m.instance_uuid for m in sent)  # in order: deterministic
        for _ in range(MAX_STEPS):
            down = self._held()
            wanted = {
                m.destination
                for uuid in instances
                for m in self.store.pending_messages(uuid)
                if m.request_id in requests and m.destination not in down
            }
            if not wanted:
                return
            self._deliver(destinations=wanted)

    def run_periodic_tasks(self) -> None:
        """Run the periodic tasks once on every running compute (auto-confirm:
        :meth:`ComputeService.periodic_tasks`), then deliver what they sent."""
        self._report_state()
        down = services.down_hosts(self.runtime)
        for host, service in self._computes.items():
            if host not in down:
                service.periodic_tasks(lambda uuid: self.api.confirm_resize(uuid, ADMIN))
        self.run()

    def advance_clock(self, seconds: float) -> None:
        """Move the (manual) clock and run the periodic tasks that are due.

        Raises:
            TypeError: the cloud does not run on a :class:`ManualClock`.
        """
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance_clock needs a ManualClock; use run_periodic_tasks()")
        self.clock.advance(seconds)
        self.run_periodic_tasks()

    def run(self, max_steps: int = MAX_STEPS) -> int:
        """Deliver messages until none is left; return how many were delivered.

        Raises:
            RuntimeError: still busy after ``max_steps`` messages (a step that loops, or a
                backlog bigger than the cap: pass a larger ``max_steps``); the message
                names the request of the last message delivered.
        """
        delivered: Message | None = None
        for count in range(max_steps):
            delivered = self.step()
            if delivered is None:
                return count
        raise self._still_busy(max_steps, delivered)

    def _still_busy(
        self, delivered: int, last: Message | None, request_id: str | None = None
    ) -> RuntimeError:
        """The error of a delivery loop that hit its cap: which request did not settle."""
        subject = request_id or (last.request_id if last is not None else None)
        what = "a request"
        if subject is not None:
            record = self.store.get_request(subject)
            what = f"request {subject}"
            if record is not None:
                what += f" ({record.action} of instance {record.instance_uuid})"
        text = f"still busy after {delivered} messages: {what} did not settle"
        if last is not None:
            text += (
                f"; the last message delivered: {last.kind} to {last.destination}"
                f" for request {last.request_id}"
            )
        return RuntimeError(text)

    # -- views ----------------------------------------------------------------------------

    def compute(self, host: str) -> ComputeService:
        try:
            return self._computes[host]
        except KeyError:
            raise ValueError(f"no compute service for host {host!r}") from None

    def driver(self, host: str) -> HypervisorDriver:
        return self.compute(host).driver

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.store.list_hosts()]

    def _uuid(self, ref: str) -> str:
        named = self.store.find_instance(ref)
        # An unknown reference goes on as it is: the API answers InstanceNotFound.
        return named.uuid if named is not None else ref

    def instance(self, ref: str) -> Instance:
        """An instance by uuid or name (deleted ones included)."""
        uuid = self._uuid(ref)
        try:
            return self.store.get_instance(uuid)
        except InstanceNotFound:
            raise InstanceNotFound(f"Instance {ref} could not be found.") from None

    def instances(self) -> list[Instance]:
        return self.store.list_instances()

    def migrations(self, ref: str | None = None) -> list[Migration]:
        return self.store.list_migrations(None if ref is None else self._uuid(ref))

    def usage(self) -> dict[str, Resources]:
        """Resources claimed on each host by every consumer."""
        return {host: self.store.usage(host) for host in self.hosts}

    def domains(self) -> dict[str, list[str]]:
        """Names of the instances whose guest is defined on each host."""
        names = {i.uuid: i.name for i in self.store.list_instances()}
        return {
            host: sorted(names.get(u, u) for u in self.driver(host).list_instances())
            for host in self.hosts
        }

    def notifications(self) -> list[Notification]:
        return self.store.list_notifications()

    def actions(self, ref: str | None = None) -> list[InstanceAction]:
        return self.store.list_actions(None if ref is None else self._uuid(ref))

    def faults(self, ref: str | None = None) -> list[Fault]:
        return self.store.list_faults(None if ref is None else self._uuid(ref))

    def result(self, request_id: str) -> OperationResult | None:
        record = self.store.get_request(request_id)
        if record is None or record.outcome is Outcome.PENDING:
            return None
        return _result(record)
