"""Cold migration of a guest with a 1 GiB disk between two local libvirt hosts.

Run (as root, hosts from ``scripts/libvirt-hosts.sh start``)::

    python -m benchmarks.bench_libvirt --output docs/benchmarks-libvirt.md

For a sparse and a full 1 GiB qcow2 disk, and each disk transport, it times
``migrate_disk_and_power_off`` + ``finish_migration`` of a running guest, split into
shutdown (1 s clean timeout, then destroy: the guest has no OS), copy, and define/start,
and compares the copy with a plain ``qemu-img convert`` of the same image in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

from coldmig_fsm import Flavor, Instance
from coldmig_fsm.drivers.libvirt.driver import (
    DiskTransport,
    LibvirtDriver,
    LibvirtFabric,
    LocalCopyTransport,
    MigrationProgress,
    VolumeStreamTransport,
    read_hosts_env,
)
from coldmig_fsm.records import Migration
from coldmig_fsm.states import MigrationStatus, MigrationType

FLAVOR = Flavor("b.1g", vcpus=1, ram_mb=64, root_gb=1)
UUID = "b0b0b0b0-1111-4222-8333-444455556666"
MIB = 1024**2


class Clock:
    """When each phase first began and last finished, from the driver's progress reports."""

    def __init__(self) -> None:
        self.began: dict[str, float] = {}
        self.ended: dict[str, float] = {}

    def __call__(self, report: MigrationProgress) -> None:
        now = time.perf_counter()
        if report.done == 0:
            self.began.setdefault(report.phase, now)
        if report.done >= report.total:
            self.ended[report.phase] = now


def _fill(path: Path, full: bool) -> None:
    if full:
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1G", str(path)],
            check=True,
            capture_output=True,
        )


def _baseline(source: Path, target_dir: Path) -> float:
    target = target_dir / "baseline.qcow2"
    start = time.perf_counter()
    subprocess.run(
        ["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", str(source), str(target)],
        check=True,
    )
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def run_once(
    hosts: dict[str, tuple[str, str]], transport: DiskTransport, full: bool
) -> dict[str, float]:
    clock = Clock()
    fabric = LibvirtFabric()
    (ua, ia), (ub, ib) = hosts["host1"], hosts["host2"]
    a: LibvirtDriver = fabric.add_host("host1", ua, ia, transport, progress=clock)
    b: LibvirtDriver = fabric.add_host("host2", ub, ib, transport, progress=clock)
    vm = Instance(uuid=UUID, name="bench", project_id="b", host="host1", flavor=FLAVOR.id)
    try:
        a.spawn(vm, FLAVOR, power_on=False)
        source = Path(ia) / f"{UUID}-disk0.qcow2"
        _fill(source, full)
        size = source.stat().st_blocks * 512
        os.sync()  # neither copy pays for the other's (or the fill's) writeback
        baseline = _baseline(source, Path(ib))  # before the guest starts and locks the image
        a.power_on(vm)
        os.sync()
        migration = Migration(
            1, "m", UUID, MigrationType.MIGRATION, MigrationStatus.MIGRATING, "host1",
            FLAVOR.id, FLAVOR.id, "host2",
        )  # fmt: skip
        start = time.perf_counter()
        info = a.migrate_disk_and_power_off(vm, "host2", FLAVOR, 1, 1)
        b.finish_migration(vm, migration, info, FLAVOR, False, power_on=True)
        total = time.perf_counter() - start
        began, ended = clock.began, clock.ended
        shutdown = ended["shutdown"] - began["shutdown"]
        copy = ended["copy"] - began["copy"]
        define_start = ended["start"] - began["define"]
        return {
            "total": total,
            "shutdown": shutdown,
            "copy": copy,
            "define_start": define_start,
            "overhead": total - shutdown - copy,
            "baseline": baseline,
            "ratio": baseline / copy,
            "allocated_mib": size / MIB,
        }
    finally:
        for driver in (a, b):
            driver.destroy(vm)
        fabric.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="write the Markdown table here")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--hosts-env",
        type=Path,
        default=Path(os.environ.get("COLDMIG_LIBVIRT_ENV", "/tmp/coldmig-libvirt/hosts.env")),
    )
    args = parser.parse_args()
    hosts = read_hosts_env(args.hosts_env)
    rows = []
    for transport in (LocalCopyTransport(), VolumeStreamTransport()):
        for full in (False, True):
            runs = [run_once(hosts, transport, full) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append(
                f"| {transport.name} | {'full' if full else 'sparse'} | "
                f"{med['allocated_mib']:.0f} | {med['total']:.2f} | {med['shutdown']:.2f} | "
                f"{med['copy']:.3f} | {med['define_start']:.2f} | {med['overhead']:.2f} | "
                f"{med['baseline']:.3f} | {med['ratio']:.2f}x |"
            )
            print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# Benchmark: libvirt cold migration of a 1 GiB disk (two local QEMU/TCG hosts)",
            "",
            "Generated by `python -m benchmarks.bench_libvirt` (median of "
            f"{args.repeat} runs). Seconds unless noted. A running guest without an OS: the",
            "shutdown is the 1 s clean-shutdown timeout then a hard destroy. *overhead* = total",
            "- shutdown - copy (define, start, checks). *ratio* = `qemu-img convert` of the same",
            "image in the same run / the driver's copy (>= 1 means as fast as qemu-img).",
            "",
            "| transport | disk | allocated MiB | total | shutdown | copy | define+start "
            "| overhead | qemu-img | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    if args.output:
        args.output.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
