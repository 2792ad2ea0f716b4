"""The hosts file ``scripts/libvirt-hosts.sh start`` writes (``hosts.env``), read.

It is a shell-style ``KEY=value`` file: ``COLDMIG_LIBVIRT_HOSTS`` lists the host names,
and each host ``NAME`` has ``COLDMIG_LIBVIRT_NAME_URI`` and ``COLDMIG_LIBVIRT_NAME_IMAGES``.
Reading it needs no libvirt binding.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_hosts_env"]


def read_hosts_env(path: Path | str) -> dict[str, tuple[str, str]]:
    """Parse a ``hosts.env`` file: host name → (URI, image directory).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file does not describe a host it lists.
    """
    values: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"')
    hosts: dict[str, tuple[str, str]] = {}
    for name in values.get("COLDMIG_LIBVIRT_HOSTS", "").split():
        try:
            hosts[name] = (
                values[f"COLDMIG_LIBVIRT_{name}_URI"],
                values[f"COLDMIG_LIBVIRT_{name}_IMAGES"],
            )
        except KeyError as missing:
            raise ValueError(f"{path}: host {name} has no {missing.args[0]}") from None
    if not hosts:
        raise ValueError(f"{path}: no hosts listed in COLDMIG_LIBVIRT_HOSTS")
    return hosts
