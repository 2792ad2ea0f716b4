"""Fixtures of the libvirt driver's tests: ``test:///`` hosts and the real QEMU hosts.

Real hosts come from ``scripts/libvirt-hosts.sh start`` (``make test`` runs it as root).
Without them a test skips, except in CI (``CI=true``), where it fails: a missing install
step must never pass as a skip there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"

HOSTS_ENV = Path(
    os.environ.get(
        "COLDMIG_LIBVIRT_ENV",
        Path(os.environ.get("COLDMIG_LIBVIRT_ROOT", "/tmp/coldmig-libvirt")) / "hosts.env",
    )
)


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine, fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this must be set up, see docs/libvirt.md)")
    pytest.skip(reason, allow_module_level=True)


try:
    import libvirt
except ImportError:
    unavailable("libvirt-python is not installed (make libvirt-hosts installs it)")

from coldmig_fsm.drivers.libvirt import read_hosts_env  # noqa: E402  (needs the binding)

NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads>
       <active>8</active><mhz>2000</mhz><model>x86_64</model></cpu>
  <memory>16777216</memory>
</node>
"""


@pytest.fixture
def node_files(tmp_path: Path) -> tuple[Path, Path]:
    """Two node descriptions: two independent ``test:///`` hosts."""
    files = (tmp_path / "host-a.xml", tmp_path / "host-b.xml")
    for file in files:
        file.write_text(NODE_XML)
    return files


@pytest.fixture
def real_hosts() -> Iterator[dict[str, tuple[str, str]]]:
    """The real hosts (name → (URI, image dir)); every guest and disk removed afterwards."""
    try:
        hosts = read_hosts_env(HOSTS_ENV)
    except (OSError, ValueError) as error:
        unavailable(f"no real libvirt hosts ({error}); run scripts/libvirt-hosts.sh start")
    if len(hosts) < 2:
        unavailable(f"{HOSTS_ENV} lists {len(hosts)} host(s); two are needed")
    connections: list[Any] = []
    for name, (uri, _) in sorted(hosts.items()):
        try:
            connections.append(libvirt.open(uri))
        except libvirt.libvirtError as error:
            unavailable(f"libvirt host {name} does not answer at {uri}: {error}")
    try:
        yield hosts
    finally:
        for conn in connections:
            wipe(conn)
            conn.close()


def wipe(conn: Any) -> None:
    """Remove every guest and every volume of the coldmig pool of one host."""
    for domain in conn.listAllDomains(0):
        if domain.isActive():
            domain.destroy()
        domain.undefine()
    try:
        pool = conn.storagePoolLookupByName("coldmig")
    except libvirt.libvirtError:
        return
    if pool.isActive():
        pool.refresh(0)
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
