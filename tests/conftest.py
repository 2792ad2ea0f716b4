"""Shared fixtures: small fake clouds and an exact snapshot of what a test looks at."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Mapping
from typing import Any

import pytest

import benchmarks
import coldmig_fsm
from coldmig_fsm import (
    Cloud,
    CloudConfig,
    Flavor,
    Host,
    InstanceAction,
    MemoryStore,
    Project,
    Resources,
    VmState,
)
from coldmig_fsm.records import RequestRecord


def _import_every_module() -> None:
    """Import every module of the package and of ``benchmarks`` (not ``__main__``).

    Hypothesis draws some values from the literals of the local modules loaded so far
    (its "local constants", gathered again whenever ``sys.modules`` grows), so without
    this the examples of a derandomized test depended on which tests had run before it:
    a mutant the stateful suite caught at its 130th example alone took 689 after the
    CLI was imported. With every module loaded first, a test sees the same pool in the
    whole suite, alone or in any order. (Without libvirt-python, an optional extra, the
    libvirt driver is left out; ``make test`` installs it, and CI fails without it in
    tests/drivers/conftest.py.)
    """
    for package in (coldmig_fsm, benchmarks):
        for module in pkgutil.walk_packages(
            package.__path__,
            f"{package.__name__}.",
            onerror=lambda name: _optional(name, sys.exc_info()[1]),
        ):
            if not module.name.endswith(".__main__"):
                try:
                    importlib.import_module(module.name)
                except ModuleNotFoundError as missing:
                    _optional(module.name, missing)


def _optional(name: str, missing: BaseException | None) -> None:
    if not (isinstance(missing, ModuleNotFoundError) and missing.name == "libvirt"):
        raise ImportError(f"{name} does not import") from missing


_import_every_module()

TINY = Flavor("m1.tiny", vcpus=1, ram_mb=512, root_gb=1)
SMALL = Flavor("m1.small", vcpus=1, ram_mb=2048, root_gb=20)
MEDIUM = Flavor("m1.medium", vcpus=2, ram_mb=4096, root_gb=40)
FLAVORS = (TINY, SMALL, MEDIUM)


def make_cloud(
    hosts: int = 2,
    *,
    config: CloudConfig | None = None,
    projects: tuple[Project, ...] = (),
    capacity: tuple[int, int, int] = (8, 16384, 200),
) -> Cloud:
    vcpus, ram, disk = capacity
    return Cloud.build(
        [Host(f"host-{chr(ord('a') + i)}", vcpus, ram, disk) for i in range(hosts)],
        FLAVORS,
        projects,
        config=config,
    )


@pytest.fixture
def cloud() -> Cloud:
    """Two empty fake hosts, host-a and host-b, and vm1 (m1.tiny, active) on host-a."""
    c = make_cloud()
    c.boot("vm1", "m1.tiny", "host-a")
    return c


@pytest.fixture
def stopped_cloud() -> Cloud:
    c = make_cloud()
    c.boot("vm1", "m1.tiny", "host-a", vm_state=VmState.STOPPED)
    return c


def usage(cloud: Cloud) -> dict[str, tuple[int, int, int]]:
    return {h: (r.vcpus, r.ram_mb, r.disk_gb) for h, r in cloud.usage().items()}


def snapshot(cloud: Cloud, name: str = "vm1") -> dict[str, Any]:
    """Everything the happy-path tests assert about one instance, as plain values."""
    inst = cloud.instance(name)
    return {
        "vm_state": inst.vm_state.value,
        "task_state": inst.task_state.value if inst.task_state else None,
        "power_state": inst.power_state.label,
        "host": inst.host,
        "flavor": inst.flavor,
        "old_flavor": inst.old_flavor,
        "new_flavor": inst.new_flavor,
        "migrations": [
            (m.status.value, m.source_compute, m.dest_compute) for m in cloud.migrations(name)
        ],
        "usage": usage(cloud),
        "domains": cloud.domains(),
    }


def notifications(cloud: Cloud) -> list[str]:
    return [n.event_type for n in cloud.notifications()]


def events(cloud: Cloud, name: str = "vm1") -> list[tuple[str, list[tuple[str, str]]]]:
    return [(a.action, [(e.event, e.result.value) for e in a.events]) for a in cloud.actions(name)]


def calls(cloud: Cloud) -> list[tuple[str, str]]:
    assert cloud.hypervisor is not None
    return [(c.host, c.call) for c in cloud.hypervisor.calls]


class ContendedStore(MemoryStore):
    """A memory store where another writer claims one megabyte on ``host`` just before
    each of the first ``times`` compare-and-swap claims made there (every one when
    ``None``): each of those claims meets a real generation conflict. ``tries`` counts
    the compare-and-swap claims on ``host``."""

    def __init__(self, host: str, times: int | None = None) -> None:
        super().__init__()
        self.host = host
        self.left = times
        self.tries = 0

    def set_allocations(
        self,
        consumer: str,
        per_host: Mapping[str, Resources],
        *,
        generations: Mapping[str, int] | None = None,
    ) -> None:
        if generations and self.host in generations:
            self.tries += 1
            if self.left is None or self.left > 0:
                self.left = None if self.left is None else self.left - 1
                super().set_allocations(f"other-{self.tries}", {self.host: Resources(0, 1, 0)})
        super().set_allocations(consumer, per_host, generations=generations)


def open_lost_request(cloud: Cloud, name: str, action: str, request_id: str = "req-lost") -> str:
    """Record an accepted ``action`` request of instance ``name`` (its action and its open
    request) that no queued message carries: what a lost message leaves. Returns its id."""
    vm = cloud.instance(name)
    cloud.store.add_action(
        InstanceAction(request_id, vm.uuid, action, vm.project_id, "admin", cloud.clock.now())
    )
    cloud.store.put_request(RequestRecord(request_id, action, vm.uuid))
    return request_id
