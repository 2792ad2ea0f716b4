#!/usr/bin/env python3
"""Run coldmig scenario files against real OpenStack Nova (in-process).

Usage (with the interpreter of the env made by conformance/make-env.sh):

    .nova-venv/bin/python conformance/nova_adapter.py [--jsonl] [--check]
                                                       FILE.yaml [FILE2.yaml ...]

For every scenario file this starts Nova's own functional-test environment (the
``nova.tests.functional.integrated_helpers.ProviderUsageBaseTestCase`` base class
shipped in the nova wheel: real REST API via wsgi-intercept, conductor, scheduler,
one nova-compute service with the fake virt driver per scenario host, placement,
SQLite databases), builds the scenario's cloud, runs its steps through Nova's REST
API and prints the outcome in the JSON shape of shared/spec/scenario-format.md.

Output: one JSON object on stdout mapping each file path to its result (default),
or, with ``--jsonl``, one line per scenario: ``{"file": PATH, "result": {...}}``.
Each result also carries ``"nova_adapter": {...}`` meta data (seconds spent,
unsupported ops, harness errors).  ``--check`` compares each result with the
file's ``expect`` block (partial match) and reports mismatches on stderr; the exit
status is then 1 if any scenario mismatched.  Logs and warnings go to stderr.

This file only *calls* Nova's test harness; it contains no Nova code.
"""

import argparse
import collections
import inspect
import json
import os
import re
import sys
import threading
import time
import unittest

# stdout carries only the JSON result: keep a private handle on the real stdout and
# point file descriptor 1 at stderr, so that whatever Nova's logging or warnings
# write to stdout ends up on stderr.
_JSON_OUT = os.fdopen(os.dup(1), 'w')
os.dup2(2, 1)

# Nova's test package applies eventlet monkey patching on import; import it first.
import nova.tests  # noqa: F401,E402

import yaml  # noqa: E402
from unittest import mock  # noqa: E402

from oslo_messaging._drivers import impl_fake  # noqa: E402
from oslo_messaging.rpc import server as rpc_server  # noqa: E402

from nova.api.openstack import wsgi as nova_wsgi  # noqa: E402
from nova.compute import utils as compute_utils  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import exception as nova_exc  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.fixtures import notifications as nova_notifications  # noqa: E402
from nova.tests.functional.api import client as api_client  # noqa: E402
from nova.tests.functional import integrated_helpers  # noqa: E402
from nova.virt import fake as fake_virt  # noqa: E402
from oslo_utils import timeutils  # noqa: E402

IMAGE_ID = '155d900f-4e14-4e4c-a73d-069cbf4541e6'  # an image of GlanceFixture
POWER_STATES = {0: 'nostate', 1: 'running', 3: 'paused', 4: 'shutdown',
                6: 'crashed', 7: 'suspended'}
RECORDED_DRIVER_CALLS = ('migrate_disk_and_power_off', 'finish_migration',
                         'confirm_migration', 'finish_revert_migration',
                         'destroy', 'power_on', 'power_off')
# arguments worth reporting with each recorded driver call
DRIVER_CALL_ARGS = {
    'migrate_disk_and_power_off': ('dest', 'flavor', 'timeout',
                                   'retry_interval'),
    'finish_migration': ('resize_instance', 'power_on'),
    'finish_revert_migration': ('power_on',),
    'power_off': ('timeout', 'retry_interval'),
    'destroy': ('destroy_disks',),
}
CLOUD_ADMIN_PROJECT = 'cloud-admin-project'
# Nova class name -> the library's public error name, where they differ
ERROR_NAMES = {'OverQuota': 'QuotaError', 'TooManyInstances': 'QuotaError'}
UNSUPPORTED_OPS = {'abort_migration', 'deliver', 'reconcile', 'race', 'settle_all'}
STEP_TIMEOUT = 30.0


class InjectedDriverError(Exception):
    """The error a `fault` step makes the fake driver raise (mode: raise)."""


# --------------------------------------------------------------------------
# Process-wide instrumentation (installed once; harmless between scenarios).
# --------------------------------------------------------------------------

class _Probe:
    """RPC in-flight counter and the Nova exception behind the last API error."""
    inflight = 0
    api_errors = []
    event_errors = []     # (instance uuid, event, exception class, message)
    # driver-call nesting depth per green thread (the fake driver's
    # confirm_migration calls its own destroy(): only the outer call is
    # recorded, as that is what the compute manager asked for)
    depth = threading.local()
    # Timing hooks (read by benchmarks/bench_nova.py): (time.monotonic(),
    # time.process_time()) when a step's request is sent, after each versioned
    # notification, and around each of wait_quiet's checks (sleeps excluded).
    step_started = None
    notified_at = []
    poll_checks = []      # (end monotonic, wall s, cpu s) of one check


def _clocks():
    return time.monotonic(), time.process_time()


def _install_probes():
    orig_notify = nova_notifications.FakeVersionedNotifier._notify

    def _notify(self, *args, **kwargs):
        res = orig_notify(self, *args, **kwargs)
        _Probe.notified_at.append(_clocks())
        return res

    nova_notifications.FakeVersionedNotifier._notify = _notify

    orig_poll = impl_fake.FakeExchange.poll

    def poll(self, target, pool):
        res = orig_poll(self, target, pool)
        if res and res[0] is not None:
            _Probe.inflight += 1
        return res

    impl_fake.FakeExchange.poll = poll

    orig_process = rpc_server.RPCServer._process_incoming

    def _process_incoming(self, incoming):
        try:
            return orig_process(self, incoming)
        finally:
            _Probe.inflight -= 1

    rpc_server.RPCServer._process_incoming = _process_incoming

    orig_exit = nova_wsgi.ResourceExceptionHandler.__exit__

    def __exit__(self, ex_type, ex_value, tb):
        if ex_value is not None:
            _Probe.api_errors.append(_root_nova_exception(ex_value))
        return orig_exit(self, ex_type, ex_value, tb)

    nova_wsgi.ResourceExceptionHandler.__exit__ = __exit__

    # Failed instance-action events: the DB keeps only the message and a
    # traceback without the exception line, so catch the class name here.
    orig_ev_exit = compute_utils.EventReporter.__exit__

    def ev_exit(self, exc_type, exc_val, exc_tb):
        if exc_val is not None:
            try:
                msg = exc_val.format_message()
            except Exception:
                msg = str(exc_val)
            for uuid in self.instance_uuids:
                _Probe.event_errors.append(
                    (uuid, self.event_name, type(exc_val).__name__, msg))
        return orig_ev_exit(self, exc_type, exc_val, exc_tb)

    compute_utils.EventReporter.__exit__ = ev_exit


def _root_nova_exception(exc):
    """Walk the __context__ chain (webob error raised in an `except` block)."""
    seen = set()
    found = None
    cur = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, nova_exc.NovaException):
            found = cur
        cur = cur.__cause__ or cur.__context__
    if found is None:
        return None
    try:
        msg = found.format_message()
    except Exception:  # pragma: no cover
        msg = str(found)
    return (type(found).__name__, msg)


def _pending_messages():
    n = 0
    for exch in list(impl_fake.FakeExchangeManager._exchanges.values()):
        with exch._queues_lock:
            for q in exch._server_queues.values():
                n += len(q)
            for (topic, pool), q in exch._topic_queues.items():
                n += len(q)
    return n


# --------------------------------------------------------------------------
# The test case that runs one scenario.
# --------------------------------------------------------------------------

class ScenarioCase(integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = 'fake.FakeDriver'
    microversion = 'latest'
    scenario = None

    def __init__(self, scenario, holder):
        super().__init__('test_scenario')
        self.scenario = scenario
        # Nova's TestCase clears instance attributes at cleanup: keep results
        # in a dict owned by the caller.
        self.holder = holder
        self.timings = holder.setdefault('timings', {})

    # -- setup ------------------------------------------------------------
    def setUp(self):
        t0 = time.monotonic()
        super().setUp()
        cfg = self.scenario.get('config') or {}
        # capacities are taken as given: no overcommit, nothing reserved
        self.flags(cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0,
                   disk_allocation_ratio=1.0, reserved_host_cpus=0,
                   reserved_host_memory_mb=0, reserved_host_disk_mb=0)
        self.flags(allow_resize_to_same_host=bool(
            cfg.get('allow_resize_to_same_host', False)))
        self.flags(resize_confirm_window=int(
            cfg.get('resize_confirm_window', 0)))
        self.flags(shutdown_timeout=int(cfg.get('shutdown_timeout', 60)))
        self.flags(max_attempts=int(cfg.get('max_attempts', 3)),
                   group='scheduler')
        self.owner_api = self.api_fixture.api
        self.owner_api.microversion = 'latest'
        self.ctx = nova_context.get_admin_context()
        self.timings['harness_setup'] = time.monotonic() - t0

    def test_scenario(self):
        self.holder['output'] = ScenarioRunner(self).run()


class ScenarioRunner:
    def __init__(self, tc):
        self.tc = tc
        self.sc = tc.scenario
        self.hosts = {}          # name -> compute service
        self.uuid_by_name = {}
        self.name_by_uuid = {}
        self.driver_calls = []
        self.faults = collections.defaultdict(list)   # (host, call) -> [spec]
        self.unsupported = []
        self.recording = False
        self.clients = {}

    # -- clients ------------------------------------------------------------
    def client(self, who, project=None):
        """API client: 'owner' = member of the instance's project; 'admin' =
        cloud admin from a project of its own (so that a lock it takes is
        recorded as locked_by 'admin', as for a real operator); 'project-admin'
        = admin role inside the instance's project (used to boot on a host)."""
        proj = project or self.tc.api_fixture.project_id
        if who == 'admin':
            proj = CLOUD_ADMIN_PROJECT
        key = (who, proj)
        if key not in self.clients:
            if who in ('admin', 'project-admin'):
                c = api_client.TestOpenStackClient(
                    'admin', self.tc.api_fixture.base_url, project_id=proj,
                    roles=['reader', 'member', 'admin'])
            else:
                c = api_client.TestOpenStackClient(
                    'fake', self.tc.api_fixture.base_url, project_id=proj,
                    roles=['reader', 'member'])
            c.microversion = 'latest'
            self.clients[key] = c
        return self.clients[key]

    def cell_ctx(self):
        return nova_context.target_cell(self.tc.ctx,
                                        self.tc.cell_mappings['cell1'])

    # -- waiting ------------------------------------------------------------
    def wait_quiet(self, cond=None, timeout=STEP_TIMEOUT, stable=3,
                   interval=0.01):
        """Wait until no RPC message is queued or being handled for `stable`
        consecutive polls and cond() (if given) holds."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            time.sleep(interval)
            wall0, cpu0 = _clocks()
            idle = _Probe.inflight <= 0 and _pending_messages() == 0 and (
                cond is None or cond())
            wall1, cpu1 = _clocks()
            _Probe.poll_checks.append((wall1, wall1 - wall0, cpu1 - cpu0))
            if idle:
                quiet += 1
                if quiet >= stable:
                    return True
            else:
                quiet = 0
        return False

    def instance(self, uuid, read_deleted='no'):
        with self.cell_ctx() as cctxt:
            cctxt.read_deleted = read_deleted
            try:
                return objects.Instance.get_by_uuid(
                    cctxt, uuid, expected_attrs=['flavor', 'system_metadata'])
            except nova_exc.InstanceNotFound:
                return None

    def task_idle(self, uuid):
        inst = self.instance(uuid)
        return inst is None or inst.task_state is None

    # -- building the cloud ---------------------------------------------------
    def start_hosts(self):
        for h in self.sc.get('hosts') or []:
            name = h['name']
            caps = dict(vcpus=int(h.get('vcpus', 8)),
                        memory_mb=int(h.get('ram_mb', 16384)),
                        local_gb=int(h.get('disk_gb', 200)))
            with mock.patch.multiple(fake_virt.FakeDriver, **caps):
                svc = self.tc._start_compute(name)
            drv = svc.manager.driver
            for k, v in caps.items():
                setattr(drv, k, v)
            if h.get('disk_available_least_gb') is not None:
                # what the hypervisor reports as really free (the fake reports 0)
                drv.host_status_base['disk_available_least'] = int(
                    h['disk_available_least_gb'])
                with self.cell_ctx() as cctxt:
                    svc.manager.update_available_resource(cctxt)
            self.hosts[name] = svc
            self.instrument_driver(name, drv)

    def resource_periodics(self):
        """Run the resource tracker's periodic task on every compute service, as a
        deployment does every 60 s. Nova's functional harness runs no periodic tasks,
        so without this the compute-node records the scheduler weighs keep what the
        first update wrote: the *initial* CPU allocation ratio (4.0, not the configured
        one) and each instance's boot-time task counters (an instance still counted as
        building gives its host an I/O-ops load that the IoOpsWeigher penalises).
        Scenario steps are taken to be further apart than that period."""
        with self.cell_ctx() as cctxt:
            for svc in self.hosts.values():
                svc.manager.update_available_resource(cctxt)

    def disable_hosts(self):
        """Hosts with `enabled: false`: their compute service is disabled through
        Nova's os-services API, as an operator would (after the instances booted,
        since a disabled host takes no new instance)."""
        api = self.tc.admin_api
        for h in self.sc.get('hosts') or []:
            if h.get('enabled', True) is False:
                svc = api.get_services(binary='nova-compute', host=h['name'])[0]
                api.put_service(svc['id'], {'status': 'disabled'})

    def instrument_driver(self, host, drv):
        for call in RECORDED_DRIVER_CALLS + ('spawn',):
            orig = getattr(drv, call)

            def wrapper(*a, _orig=orig, _call=call, **kw):
                inst = kw.get('instance')
                if inst is None:
                    for x in a:
                        if isinstance(x, objects.Instance):
                            inst = x
                            break
                uuid = getattr(inst, 'uuid', None)
                name = self.name_by_uuid.get(uuid, uuid)
                depth = getattr(_Probe.depth, 'n', 0)
                if self.recording and _call != 'spawn' and depth == 0:
                    rec = {'host': host, 'call': _call, 'instance': name}
                    try:
                        bound = inspect.signature(_orig).bind(*a, **kw)
                        bound.apply_defaults()
                        args = bound.arguments
                    except TypeError:
                        args = kw
                    for k in DRIVER_CALL_ARGS.get(_call, ()):
                        if k in args:
                            v = args[k]
                            rec[k] = getattr(v, 'name', v) if k in (
                                'flavor',) else v
                    self.driver_calls.append(rec)
                armed = self.faults.get((host, _call))
                if armed:
                    spec = armed[0]
                    spec['left'] -= 1
                    if spec['left'] <= 0:
                        armed.pop(0)
                    err = InjectedDriverError(
                        spec.get('message') or 'injected %s fault on %s' % (
                            _call, host))
                    if spec.get('rollback'):
                        raise nova_exc.InstanceFaultRollback(
                            inner_exception=err)
                    raise err
                _Probe.depth.n = depth + 1
                try:
                    return _orig(*a, **kw)
                finally:
                    _Probe.depth.n = depth

            setattr(drv, call, wrapper)

    def make_flavors(self):
        api = self.tc.admin_api
        for f in api.get_flavors():
            api.delete_flavor(f['id'])
        for f in self.sc.get('flavors') or []:
            api.post_flavor({'flavor': {
                'id': str(f['id']), 'name': str(f['id']),
                'vcpus': int(f.get('vcpus', 1)),
                'ram': int(f.get('ram_mb', 512)),
                'disk': int(f.get('root_gb', 1))}})

    def set_quotas(self):
        for p in self.sc.get('projects') or []:
            qs = {}
            if 'cores' in p:
                qs['cores'] = int(p['cores'])
            if 'ram_mb' in p:
                qs['ram'] = int(p['ram_mb'])
            if 'instances' in p:
                qs['instances'] = int(p['instances'])
            if qs:
                self.tc.admin_api.api_put(
                    '/os-quota-sets/%s' % p['id'], {'quota_set': qs})

    def boot_instances(self):
        insts = self.sc.get('instances') or []
        for i in insts:
            api = self.client('project-admin', i.get('project'))
            body = {'name': i['name'], 'imageRef': IMAGE_ID,
                    'flavorRef': str(i['flavor']), 'networks': 'none',
                    'host': i['host']}
            srv = api.post_server({'server': body})
            self.uuid_by_name[i['name']] = srv['id']
            self.name_by_uuid[srv['id']] = i['name']

        def all_active():
            for i in insts:
                inst = self.instance(self.uuid_by_name[i['name']])
                if inst.vm_state == 'error':
                    raise RuntimeError('boot of %s failed' % i['name'])
                if inst.vm_state != 'active' or inst.task_state is not None:
                    return False
            return True
        if not self.wait_quiet(all_active, timeout=60):
            raise RuntimeError('instances did not become active')
        # bring them into their initial states
        for i in insts:
            uuid = self.uuid_by_name[i['name']]
            admin = self.client('project-admin', i.get('project'))
            vm_state = i.get('vm_state', 'active')
            task_state = i.get('task_state')
            if vm_state == 'stopped':
                admin.post_server_action(uuid, {'os-stop': None})
                self.wait_quiet(
                    lambda: self.instance(uuid).vm_state == 'stopped')
            elif vm_state == 'paused':
                admin.post_server_action(uuid, {'pause': None})
                self.wait_quiet(
                    lambda: self.instance(uuid).vm_state == 'paused')
            elif vm_state not in ('active', None):
                self.force_state(uuid, vm_state=vm_state)
            if task_state:
                self.force_state(uuid, task_state=task_state)
            if i.get('locked'):
                # locked_by: admin (default) or owner
                self.client(i.get('locked_by', 'admin'), i.get('project')
                            ).post_server_action(uuid, {'lock': None})

    def force_state(self, uuid, **kw):
        inst = self.instance(uuid)
        for k, v in kw.items():
            setattr(inst, k, v)
        if 'vm_state' in kw and 'power_state' not in kw:
            inst.power_state = {'active': 1, 'stopped': 4, 'paused': 3}.get(
                kw['vm_state'], 0)
        inst.save()

    # -- steps --------------------------------------------------------------
    def existing_action_ids(self):
        ids = set()
        with self.cell_ctx() as cctxt:
            for uuid in self.uuid_by_name.values():
                for a in objects.InstanceActionList.get_by_instance_uuid(
                        cctxt, uuid):
                    ids.add(a.id)
        return ids

    def new_error_event(self, before_ids):
        """(type, message) of the first failed action event since before_ids."""
        with self.cell_ctx() as cctxt:
            for uuid in self.uuid_by_name.values():
                acts = sorted(objects.InstanceActionList.get_by_instance_uuid(
                    cctxt, uuid), key=lambda a: a.id)
                for a in acts:
                    if a.id in before_ids:
                        continue
                    evs = sorted(objects.InstanceActionEventList.get_by_action(
                        cctxt, a.id), key=lambda e: e.id)
                    for e in evs:
                        if e.result and e.result.lower() == 'error':
                            return {'type': 'Error', 'message': e.details,
                                    'event': e.event}
        return None

    def do_step(self, st):
        op = st.get('op')
        out = {'op': op}
        if 'instance' in st:
            out['instance'] = st['instance']
        if 'host' in st:
            out['host'] = st['host']
        if op in UNSUPPORTED_OPS or (op == 'fault' and st.get(
                'mode', 'raise') != 'raise'):
            self.unsupported.append(op if op != 'fault' else 'fault:%s' % (
                st.get('mode')))
            out.update(ok=None, error=None, unsupported=True)
            return out
        if op == 'fault':
            self.faults[(st['host'], st['call'])].append(
                dict(st, left=int(st.get('times', 1))))
            out.update(ok=True, error=None)
            return out
        if op == 'advance_clock':
            out['seconds'] = st.get('seconds')
            self.advance_clock(float(st.get('seconds', 0)))
            out.update(ok=True, error=None)
            return out
        if op == 'restart_compute':
            self.restart_compute(st['host'])
            out.update(ok=True, error=None)
            return out

        who = st.get('as', 'admin')
        name = st.get('instance')
        uuid = self.uuid_by_name.get(name, '00000000-0000-0000-0000-%012d' % 0)
        proj = next((i.get('project') for i in self.sc.get('instances') or []
                     if i['name'] == name), None)
        api = self.client(who, proj)
        before = self.existing_action_ids()
        _Probe.api_errors = []
        n_ev = len(_Probe.event_errors)
        _Probe.step_started = _clocks()
        try:
            if op == 'migrate':
                body = {'host': st['host']} if st.get('host') else None
                api.post_server_action(uuid, {'migrate': body})
            elif op == 'resize':
                api.post_server_action(
                    uuid, {'resize': {'flavorRef': str(st['flavor'])}})
            elif op == 'confirm_resize':
                api.post_server_action(uuid, {'confirmResize': None})
            elif op == 'revert_resize':
                api.post_server_action(uuid, {'revertResize': None})
            elif op == 'stop':
                api.post_server_action(uuid, {'os-stop': None})
            elif op == 'start':
                api.post_server_action(uuid, {'os-start': None})
            elif op == 'lock':
                api.post_server_action(uuid, {'lock': None})
            elif op == 'unlock':
                api.post_server_action(uuid, {'unlock': None})
            elif op == 'delete':
                api.delete_server(uuid)
            else:
                raise ValueError('unknown op %r' % op)
        except api_client.OpenStackApiException as e:
            out.update(ok=False, error=self.http_error(e))
            self.wait_quiet()
            return out
        settled = self.wait_quiet(lambda: self.task_idle(uuid))
        err = self.new_error_event(before)
        if err is not None:
            # the class name comes from the EventReporter hook
            rec = next((r for r in _Probe.event_errors[n_ev:]
                        if r[0] == uuid), None)
            if rec:
                err = _error(rec[2], rec[3], event=rec[1])
        inst = self.instance(uuid)
        if err is None and inst is not None and inst.vm_state == 'error':
            err = {'type': 'Error', 'message': 'instance went to error'}
        if not settled:
            out.update(ok=False, error={'type': 'Timeout',
                                        'message': 'did not settle'})
        elif err:
            out.update(ok=False, error=err)
            out['async'] = True
        else:
            out.update(ok=True, error=None)
        return out

    def advance_clock(self, seconds):
        """Freeze oslo's clock (on first use), move it forward, refresh the
        compute services' heartbeats at the new time and run the periodic task
        that is due in a cold-migration scenario (_poll_unconfirmed_resizes)."""
        if timeutils._override_time is None:
            timeutils.set_time_override(timeutils.utcnow())
            self.tc.addCleanup(timeutils.clear_time_override)
        timeutils.advance_time_seconds(seconds)
        for svc in self.hosts.values():
            svc.service_ref.report_count += 1
            svc.service_ref.save()
        for svc in self.hosts.values():
            with self.cell_ctx() as cctxt:
                svc.manager._poll_unconfirmed_resizes(cctxt)
        self.wait_quiet()

    def restart_compute(self, host):
        """Nova's restart_compute_service: a new ComputeManager (init_host
        runs its recovery) around the same fake driver (guests survive)."""
        new = self.tc.restart_compute_service(self.hosts[host])
        self.tc.computes[host] = new
        self.hosts[host] = new
        self.wait_quiet()

    def http_error(self, e):
        resp = e.response
        status = getattr(resp, 'status_code', None)
        try:
            body = resp.json()
            msg = next(iter(body.values())).get('message', '')
        except Exception:
            msg = getattr(resp, 'text', '') or str(e)
        nova = next((x for x in _Probe.api_errors if x), None)
        typ = nova[0] if nova else _type_from_http(status, msg)
        return _error(typ, msg, http_status=status)

    # -- the snapshot -----------------------------------------------------------
    def snapshot(self, action_baseline):
        res = {}
        insts = {}
        for name, uuid in self.uuid_by_name.items():
            inst = self.instance(uuid, read_deleted='yes')
            if inst is None:
                insts[name] = None
                continue
            deleted = bool(inst.deleted)
            insts[name] = {
                'vm_state': 'deleted' if deleted else inst.vm_state,
                'task_state': inst.task_state,
                'power_state': POWER_STATES.get(inst.power_state,
                                                str(inst.power_state)),
                'host': inst.host,
                'flavor': inst.flavor.name if inst.flavor else None,
                'old_flavor': inst.old_flavor.name if inst.old_flavor else None,
                'new_flavor': inst.new_flavor.name if inst.new_flavor else None,
                'locked': bool(inst.locked),
                'progress': inst.progress,
            }
            if inst.locked:
                insts[name]['locked_by'] = inst.locked_by
        res['instances'] = insts
        with self.cell_ctx() as cctxt:
            # deleting an instance soft-deletes its migrations: keep them
            cctxt.read_deleted = 'yes'
            migs = objects.MigrationList.get_by_filters(cctxt, {})
            migs = sorted(migs, key=lambda m: m.id)
        res['migrations'] = []
        for n, m in enumerate(migs):
            rec = {'id': n + 1,
                   'instance': self.name_by_uuid.get(m.instance_uuid),
                   'type': m.migration_type, 'status': m.status,
                   'source_compute': m.source_compute,
                   'dest_compute': m.dest_compute}
            if m.deleted:
                rec['deleted'] = True
            res['migrations'].append(rec)
        usage = {}
        for host in self.hosts:
            with self.cell_ctx() as cctxt:
                cn = objects.ComputeNodeList.get_all_by_host(cctxt, host)[0]
            u = self.tc.placement.get(
                '/resource_providers/%s/usages' % cn.uuid).body['usages']
            usage[host] = {'vcpus': u.get('VCPU', 0),
                           'ram_mb': u.get('MEMORY_MB', 0),
                           'disk_gb': u.get('DISK_GB', 0)}
        res['usage'] = usage
        res['domains'] = {
            host: sorted(self.name_by_uuid.get(u, u)
                         for u in svc.manager.driver.instances)
            for host, svc in self.hosts.items()}
        res['driver_calls'] = self.driver_calls
        res['notifications'] = [
            n['event_type'] for n in self.tc.notifier.versioned_notifications]
        actions = {}
        with self.cell_ctx() as cctxt:
            for name, uuid in self.uuid_by_name.items():
                cctxt.read_deleted = 'yes'
                acts = sorted(objects.InstanceActionList.get_by_instance_uuid(
                    cctxt, uuid), key=lambda a: a.id)
                lst = []
                for a in acts:
                    if a.id in action_baseline:
                        continue
                    evs = sorted(objects.InstanceActionEventList.get_by_action(
                        cctxt, a.id), key=lambda e: e.id)
                    lst.append({'action': a.action, 'events': [
                        {'event': e.event, 'result': e.result}
                        for e in evs]})
                actions[name] = lst
        res['actions'] = actions
        faults = {}
        with self.cell_ctx() as cctxt:
            for name, uuid in self.uuid_by_name.items():
                fl = objects.InstanceFaultList.get_by_instance_uuids(
                    cctxt, [uuid])
                if len(fl):
                    faults[name] = [{'code': f.code, 'message': f.message}
                                    for f in sorted(fl, key=lambda f: f.id)]
        res['faults'] = faults
        return res

    def step_timing(self, first_notification, first_check):
        """How long the step took until its last versioned notification, from
        the moment its request was sent, and how much of that was this
        adapter's own polling (the checks of wait_quiet; its sleeps yield to
        Nova's green threads).  None for a step that sent no request or
        emitted no notification."""
        notified = _Probe.notified_at[first_notification:]
        if _Probe.step_started is None or not notified:
            return None
        (wall0, cpu0), (wall1, cpu1) = _Probe.step_started, notified[-1]
        checks = [c for c in _Probe.poll_checks[first_check:]
                  if wall0 <= c[0] <= wall1]
        return {'to_last_notification_s': wall1 - wall0,
                'cpu_to_last_notification_s': cpu1 - cpu0,
                'notifications': len(notified),
                'adapter_poll_checks': len(checks),
                'adapter_poll_check_s': sum(c[1] for c in checks),
                'adapter_poll_check_cpu_s': sum(c[2] for c in checks)}

    def run(self):
        t0 = time.monotonic()
        self.start_hosts()
        self.make_flavors()
        self.set_quotas()
        self.boot_instances()
        self.disable_hosts()
        self.wait_quiet()
        baseline = self.existing_action_ids()
        self.tc.notifier.reset()
        self.recording = True
        t1 = time.monotonic()
        steps = []
        timings = []
        for st in self.sc.get('steps') or []:
            self.resource_periodics()
            n0 = len(self.tc.notifier.versioned_notifications)
            d0 = len(self.driver_calls)
            _Probe.step_started = None
            k0, p0 = len(_Probe.notified_at), len(_Probe.poll_checks)
            out = self.do_step(st)
            timings.append(self.step_timing(k0, p0))
            # extra, for reading: what this step emitted / called
            out['step_notifications'] = [
                n['event_type'] for n in
                self.tc.notifier.versioned_notifications[n0:]]
            out['step_driver_calls'] = [
                '%s:%s' % (c['host'], c['call'])
                for c in self.driver_calls[d0:]]
            steps.append(out)
        t2 = time.monotonic()
        res = {'steps': steps}
        res.update(self.snapshot(baseline))
        meta = {'cloud_setup_s': round(t1 - t0, 3),
                'steps_s': round(t2 - t1, 3),
                'step_timings': timings,
                'actions_include_boot': False,
                'unsupported': self.unsupported}
        res['nova_adapter'] = meta
        return res


def _error(nova_type, message, **extra):
    err = {'type': ERROR_NAMES.get(nova_type, nova_type), 'message': message}
    if err['type'] != nova_type:
        err['nova_type'] = nova_type
    err.update(extra)
    return err


def _type_from_http(status, msg):
    low = msg.lower()
    if status == 403:
        return 'QuotaError' if 'quota' in low else 'PolicyNotAuthorized'
    if status == 404:
        return 'InstanceNotFound'
    if status == 409:
        if 'locked' in low:
            return 'InstanceIsLocked'
        return 'InstanceInvalidState'
    if status == 400:
        if 'flavor' in low and 'same' in low:
            return 'CannotResizeToSameFlavor'
        if 'could not be found' in low and 'host' in low:
            return 'ComputeHostNotFound'
        if 'same host' in low or 'where the server exists' in low:
            return 'CannotMigrateToSameHost'
    return 'HTTP%s' % status


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------

def _subset_diff(expect, actual, path=''):
    diffs = []
    if isinstance(expect, dict):
        if not isinstance(actual, dict):
            return ['%s: expected %r, got %r' % (path or '.', expect, actual)]
        for k, v in expect.items():
            if k not in actual:
                diffs.append('%s.%s: missing (expected %r)' % (path, k, v))
            else:
                diffs += _subset_diff(v, actual[k], '%s.%s' % (path, k))
    elif isinstance(expect, list):
        if not isinstance(actual, list) or len(actual) != len(expect):
            return ['%s: expected %r, got %r' % (path, expect, actual)]
        for n, (e, a) in enumerate(zip(expect, actual)):
            diffs += _subset_diff(e, a, '%s[%d]' % (path, n))
    elif expect != actual:
        diffs.append('%s: expected %r, got %r' % (path, expect, actual))
    return diffs


def run_file(path):
    with open(path) as f:
        sc = yaml.safe_load(f)
    t0 = time.monotonic()
    holder = {}
    case = ScenarioCase(sc, holder)
    result = unittest.TestResult()
    case.run(result)
    elapsed = time.monotonic() - t0
    out = holder.get('output') or {}
    meta = out.setdefault('nova_adapter', {})
    meta['seconds'] = round(elapsed, 3)
    meta['harness_setup_s'] = round(
        holder['timings'].get('harness_setup', 0), 3)
    errs = [str(e) for _, e in result.errors + result.failures]
    if errs:
        meta['harness_errors'] = errs
        for e in errs:
            print('HARNESS ERROR %s:\n%s' % (path, e), file=sys.stderr)
    return sc, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('files', nargs='+')
    ap.add_argument('--jsonl', action='store_true',
                    help='one JSON line per scenario instead of one object')
    ap.add_argument('--check', action='store_true',
                    help="compare with each file's expect block")
    ap.add_argument('-o', '--out-dir',
                    help='also write each result to OUT_DIR/<stem>.json')
    args = ap.parse_args(argv)

    real_stdout = _JSON_OUT
    _install_probes()
    results = {}
    rc = 0
    for path in args.files:
        sc, out = run_file(path)
        if args.check and sc.get('expect'):
            diffs = _subset_diff(sc['expect'], out)
            out['nova_adapter']['expect_diffs'] = diffs
            if diffs:
                rc = 1
                print('MISMATCH %s:\n  %s' % (path, '\n  '.join(diffs)),
                      file=sys.stderr)
            else:
                print('MATCH %s' % path, file=sys.stderr)
        print('%s: %.2fs' % (path, out['nova_adapter']['seconds']),
              file=sys.stderr)
        if args.out_dir:
            os.makedirs(args.out_dir, exist_ok=True)
            stem = os.path.splitext(os.path.basename(path))[0]
            with open(os.path.join(args.out_dir, stem + '.json'), 'w') as f:
                json.dump(out, f, indent=2)
                f.write('\n')
        if args.jsonl:
            real_stdout.write(json.dumps({'file': path, 'result': out}) + '\n')
            real_stdout.flush()
        else:
            results[path] = out
    if not args.jsonl:
        real_stdout.write(json.dumps(results, indent=2) + '\n')
    return rc


if __name__ == '__main__':
    sys.exit(main())
