"""The hosts a test run starts are stopped when it ends: scripts/with-libvirt-hosts.sh.

Each test runs the wrapper around a small Python command that records what the wrapper
started (its root directory, the daemons' pids, a guest's qemu pid) and then ends the way
the test wants: failing, killed by a signal, or passing with ``KEEP_HOSTS=1``. Afterwards
no recorded process may still run and the root must be gone (unless kept).

The wrapper reaps its daemons (they are its children): not even a zombie of them is left.
Daemons kept by ``KEEP_HOSTS=1`` outlive the wrapper, so pid 1 reaps them once stopped (the
stop gives it 5 s), and the qemu processes libvirt detaches are pid 1's too: for those,
stopped means not running, since how soon pid 1 reaps is not this project's to promise.
(Making this process their reaper instead, with ``PR_SET_CHILD_SUBREAPER``, was tried: then
nobody reaps the qemu capability probes libvirtd detaches at start, and libvirtd waits for
each of them to vanish: these three tests took 116 s instead of 16.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import unavailable

pytestmark = pytest.mark.libvirt_hosts

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
WRAPPER = SCRIPTS / "with-libvirt-hosts.sh"
HOSTS = SCRIPTS / "libvirt-hosts.sh"

# What runs inside the wrapper: argv[1] is the report file, argv[2] how to end.
RECORDER = r"""
import json, os, pathlib, signal, subprocess, sys
report, ending = pathlib.Path(sys.argv[1]), sys.argv[2]
root = pathlib.Path(os.environ["COLDMIG_LIBVIRT_ROOT"])
found = {"root": str(root), "env": os.environ["COLDMIG_LIBVIRT_ENV"], "libvirtd": [], "qemu": []}
for pid_file in sorted(root.glob("host*/libvirtd.pid")):
    found["libvirtd"].append(int(pid_file.read_text()))
if ending == "fail":
    # A guest the command leaves running: the stop must not let its qemu outlive the host.
    uri = f"qemu+unix:///system?socket={root}/host1/run/libvirt-sock"
    xml = root / "leftover.xml"
    xml.write_text(
        "<domain type='qemu'><name>leftover</name><memory unit='MiB'>32</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    subprocess.run(["virsh", "-c", uri, "create", str(xml)], check=True, capture_output=True)
    found["qemu"].append(int((root / "host1/run/qemu/leftover.pid").read_text()))
report.write_text(json.dumps(found))
if ending == "fail":
    sys.exit(3)
if ending == "term":
    os.kill(os.getppid(), signal.SIGTERM)  # the wrapper: its trap runs once this returns
"""


def process(pid: int, name: str) -> str | None:
    """The state letter (``R``, ``S``, ``Z``...) of ``pid`` if it is a ``name*`` process."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rpartition(")")[2].split()[0] if comm.startswith(name) else None


def running(pid: int, name: str) -> bool:
    state = process(pid, name)
    return state is not None and state != "Z"


def running_daemon(pid: int) -> bool:
    return running(pid, "libvirtd")


@pytest.fixture(autouse=True)
def root_user() -> None:
    if os.geteuid() != 0:
        unavailable("starting libvirtd hosts needs root")


def run_wrapped(
    tmp_path: Path, ending: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [str(WRAPPER), sys.executable, "-c", RECORDER, str(report), ending],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.exists(), result.stderr
    found: dict[str, Any] = json.loads(report.read_text())
    return result, found


def assert_all_stopped(found: dict[str, Any], *, reaped: bool = True) -> None:
    """No recorded process runs (``reaped``: no daemon is left even as a zombie); the root
    is gone."""
    left = (lambda pid: process(pid, "libvirtd") is not None) if reaped else running_daemon
    assert [pid for pid in found["libvirtd"] if left(pid)] == []
    assert [pid for pid in found["qemu"] if running(pid, "qemu-system")] == []
    assert not Path(found["root"]).exists()


def test_a_failing_command_still_stops_its_hosts_and_guests(tmp_path: Path) -> None:
    result, found = run_wrapped(tmp_path, "fail", KEEP_HOSTS="")
    assert result.returncode == 3, result.stderr
    assert len(found["libvirtd"]) == 2
    assert len(found["qemu"]) == 1
    assert found["env"] == f"{found['root']}/hosts.env"
    assert_all_stopped(found)
    assert "hosts stopped" in result.stderr


def test_a_terminated_run_stops_its_hosts(tmp_path: Path) -> None:
    result, found = run_wrapped(tmp_path, "term", KEEP_HOSTS="")
    assert result.returncode == 128 + 15, result.stderr
    assert len(found["libvirtd"]) == 2
    assert_all_stopped(found)


def test_keep_hosts_leaves_them_running_until_stopped(tmp_path: Path) -> None:
    result, found = run_wrapped(tmp_path, "keep", KEEP_HOSTS="1")
    root = found["root"]
    try:
        assert result.returncode == 0, result.stderr
        assert [running(pid, "libvirtd") for pid in found["libvirtd"]] == [True, True]
        assert Path(found["env"]).exists()
        assert f"COLDMIG_LIBVIRT_ROOT={root} {HOSTS} stop" in result.stderr
    finally:
        stop = subprocess.run(
            [str(HOSTS), "stop"],
            env={**os.environ, "COLDMIG_LIBVIRT_ROOT": root},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert stop.returncode == 0, stop.stderr
    assert_all_stopped(found, reaped=False)
