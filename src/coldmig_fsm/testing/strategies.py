"""Hypothesis strategies: clouds (hosts, capacities), flavors, instances in any state, faults.

Every strategy draws plain records, so a test can combine them freely::

    @given(clouds(), fault_plans())
    def test_my_orchestrator(cloud, plan): ...

:func:`clouds` builds a :class:`~coldmig_fsm.Cloud` of fake hosts with instances placed
where they fit, each in a stable state of the machine (``active``, ``stopped``, ``error``,
...), and optionally locked.
"""

from __future__ import annotations

from hypothesis import strategies as st

from coldmig_fsm.drivers.fake import VERBS, FakeFault, FaultMode
from coldmig_fsm.records import CloudConfig, Flavor, Host, Resources
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.states import VmState
from coldmig_fsm.verification.explorer import FAULT_MODES

__all__ = [
    "STABLE_VM_STATES",
    "clouds",
    "configs",
    "fault_plans",
    "faults",
    "flavors",
    "hosts",
]

STABLE_VM_STATES = (VmState.ACTIVE, VmState.STOPPED, VmState.ERROR)
"""The vm_states an instance may be booted in (task_state null) that this workflow uses."""


def flavors(prefix: str = "f") -> st.SearchStrategy[Flavor]:
    """A flavor: 1-4 vCPUs, 512-4096 MB, 1-40 GB root disk."""
    return st.builds(
        Flavor,
        id=st.integers(0, 99).map(lambda n: f"{prefix}{n}"),
        vcpus=st.integers(1, 4),
        ram_mb=st.sampled_from([512, 1024, 2048, 4096]),
        root_gb=st.integers(1, 40),
    )


def hosts(count: int) -> st.SearchStrategy[list[Host]]:
    """``count`` hosts ``host-a``... with capacities from tight to roomy."""
    one = st.tuples(st.integers(1, 16), st.integers(1, 32), st.integers(10, 400))
    return st.lists(one, min_size=count, max_size=count).map(
        lambda caps: [
            Host(f"host-{chr(ord('a') + i)}", vcpus, gb * 1024, disk)
            for i, (vcpus, gb, disk) in enumerate(caps)
        ]
    )


def configs() -> st.SearchStrategy[CloudConfig]:
    """Nova options: same-host resize, auto-confirm window, attempts."""
    return st.builds(
        CloudConfig,
        allow_resize_to_same_host=st.booleans(),
        resize_confirm_window=st.sampled_from([0, 60]),
        max_attempts=st.integers(1, 3),
    )


@st.composite
def clouds(
    draw: st.DrawFn,
    min_hosts: int = 2,
    max_hosts: int = 4,
    max_instances: int = 4,
) -> Cloud:
    """A fake cloud with 2 distinct flavors and instances in any stable state.

    Instances that fit nowhere are skipped, so the cloud always satisfies the invariants.
    """
    count = draw(st.integers(min_hosts, max_hosts))
    host_list = draw(hosts(count))
    pair = draw(st.lists(flavors(), min_size=2, max_size=2, unique_by=lambda f: f.id))
    cloud = Cloud.build(host_list, pair, config=draw(configs()))
    for index in range(draw(st.integers(0, max_instances))):
        flavor = draw(st.sampled_from(pair))
        host = draw(st.sampled_from(host_list))
        used = cloud.store.usage(host.name)
        if not (used + flavor.resources).fits_within(host.capacity):
            continue
        cloud.boot(
            f"vm{index + 1}",
            flavor.id,
            host.name,
            vm_state=draw(st.sampled_from(STABLE_VM_STATES)),
            locked=draw(st.booleans()),
        )
    return cloud


def faults(host_names: list[str]) -> st.SearchStrategy[FakeFault]:
    """One fault on one driver call of one of ``host_names``, in any mode."""

    def build(host: str, call: str, mode: str, times: int) -> FakeFault:
        rollback = mode == "rollback"
        return FakeFault(
            host,
            call,
            FaultMode.RAISE if rollback else FaultMode(mode),
            times=times,
            rollback=rollback,
        )

    return st.builds(
        build,
        st.sampled_from(host_names),
        st.sampled_from(VERBS),
        st.sampled_from(FAULT_MODES),
        st.integers(1, 2),
    )


def fault_plans(host_names: list[str], max_size: int = 3) -> st.SearchStrategy[list[FakeFault]]:
    """Up to ``max_size`` faults to arm on a :class:`~coldmig_fsm.FakeHypervisor`."""
    return st.lists(faults(host_names), max_size=max_size)


def resources() -> st.SearchStrategy[Resources]:
    return st.builds(Resources, st.integers(0, 8), st.integers(0, 8192), st.integers(0, 100))
