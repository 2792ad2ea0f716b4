"""How a guest's disk images travel from the source host to the destination host.

The libvirt driver prepares both ends (the source volume, and an empty target volume it
created on the destination through libvirt), then hands the pair to a
:class:`DiskTransport`, which moves the bytes:

- :class:`LocalCopyTransport` runs ``qemu-img convert`` on this machine, from the source
  volume's path to the target volume's path. Both paths must be visible here: hosts on one
  machine, or image directories on a shared file system.
- :class:`VolumeStreamTransport` streams the volume through libvirt
  (``virStorageVolDownload`` on the source, ``virStorageVolUpload`` on the destination),
  holes included. It needs nothing but the two libvirt connections, so it works between
  real remote hosts.

A transport never creates or deletes volumes: when it fails, the driver removes the
half-written target. No transport runs a shell; ``qemu-img`` gets an argument list.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs
import libvirt

from coldmig_fsm.exceptions import HypervisorError

__all__ = [
    "DiskCopy",
    "DiskTransport",
    "LocalCopyTransport",
    "ProgressCallback",
    "VolumeStreamTransport",
]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)`` while a disk is copied."""


@attrs.frozen
class DiskCopy:
    """One disk to move.

    Attributes:
        source: the source host's ``virStorageVol``.
        target: the (already created, empty) ``virStorageVol`` on the destination.
        format: the image format of both (``qcow2`` or ``raw``).
        size: bytes the source occupies (its physical size), the copy's 100 %.
    """

    source: Any
    target: Any
    format: str
    size: int


@runtime_checkable
class DiskTransport(Protocol):
    """Moves one disk image's bytes from ``copy.source`` to ``copy.target``."""

    @property
    def name(self) -> str: ...

    def copy(self, copy: DiskCopy, progress: ProgressCallback) -> int:
        """Copy the image; return the bytes of the image it covered (holes included).

        Raises:
            HypervisorError: the copy failed (the target may be half written).
        """
        ...


_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


class LocalCopyTransport:
    """``qemu-img convert`` between two paths visible on this machine.

    Args:
        qemu_img: the ``qemu-img`` program (default: found on ``PATH``).
        extra_args: more ``qemu-img convert`` options (e.g. ``("-W",)``).
    """

    name = "local"

    def __init__(self, qemu_img: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self._qemu_img = qemu_img
        self._extra = tuple(extra_args)

    def __repr__(self) -> str:
        return f"LocalCopyTransport(extra_args={self._extra!r})"

    def command(self, source: str, target: str, fmt: str) -> list[str]:
        """The ``qemu-img`` argument list that copies ``source`` to ``target``."""
        program = self._qemu_img or shutil.which("qemu-img")
        if program is None:
            raise HypervisorError("local disk copy: qemu-img is not installed")
        return [program, "convert", "-p", "-f", fmt, "-O", fmt, *self._extra, source, target]

    def copy(self, copy: DiskCopy, progress: ProgressCallback) -> int:
        source, target = str(copy.source.path()), str(copy.target.path())
        args = self.command(source, target, copy.format)
        progress(0, copy.size)
        try:
            process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
            )
        except OSError as error:
            raise HypervisorError(f"local disk copy: cannot run qemu-img: {error}") from error
        assert process.stdout is not None
        assert process.stderr is not None
        stdout = process.stdout
        assert isinstance(stdout, io.BufferedReader)
        with process:
            pending = b""
            while chunk := stdout.read1(4096):
                pending = (pending + chunk)[-256:]
                found = _PERCENT.findall(pending)
                if found:
                    progress(int(copy.size * float(found[-1]) / 100), copy.size)
            errors = process.stderr.read().decode(errors="replace").strip()
            code = process.wait()
        if code != 0:
            raise HypervisorError(
                f"local disk copy {source} -> {target} failed (qemu-img exit {code}): {errors}"
            )
        progress(copy.size, copy.size)
        return copy.size


class VolumeStreamTransport:
    """Download from the source volume and upload to the target through libvirt streams.

    Holes travel as holes (sparse streams), so a sparse image stays sparse and costs no
    bandwidth for its unallocated parts.

    Args:
        chunk_size: bytes per ``recv``/``send``.
    """

    name = "stream"

    def __init__(self, chunk_size: int = 4 * 1024 * 1024) -> None:
        self._chunk = chunk_size

    def __repr__(self) -> str:
        return f"VolumeStreamTransport(chunk_size={self._chunk})"

    def copy(self, copy: DiskCopy, progress: ProgressCallback) -> int:
        sparse_down = libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM
        sparse_up = libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM
        down = copy.source.connect().newStream(0)
        up = copy.target.connect().newStream(0)
        done = 0  # position in the image, holes included
        progress(0, copy.size)
        try:
            copy.source.download(down, 0, 0, sparse_down)
            copy.target.upload(up, 0, 0, sparse_up)
            while True:
                got = down.recvFlags(self._chunk, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
                if got == -3:  # the source is at a hole: pass its length on
                    length = int(down.recvHole(0))
                    up.sendHole(length, 0)
                    done += length
                elif isinstance(got, bytes):
                    if not got:
                        break
                    view = memoryview(got)
                    while view:
                        sent = int(up.send(view.tobytes()))
                        view = view[sent:]
                    done += len(got)
                else:
                    raise HypervisorError(f"volume stream: unexpected recv result {got!r}")
                progress(min(done, copy.size), copy.size)
            down.finish()
            up.finish()
        except (libvirt.libvirtError, HypervisorError) as error:
            for stream in (down, up):
                # Already finished or broken: nothing more to release.
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
            if isinstance(error, HypervisorError):
                raise
            raise HypervisorError(f"volume stream copy failed: {error}") from error
        progress(copy.size, copy.size)
        return done
