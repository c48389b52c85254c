"""Folders that refuse writes, disks that fill up, and writes that fail part-way, for root too.

The tests run as root, where ``chmod 555`` does not stop a write. Each helper uses the
most real mechanism the machine allows and says which one it used:

* ``read_only_folder``: chmod (non-root) -> a read-only bind mount (root with
  CAP_SYS_ADMIN) -> a simulation that makes ``open`` in the engine's atomic writer
  (and in its mirror copier) raise ``EROFS`` for files in that folder;
* ``small_disk``: a real ``tmpfs`` of the given size -> a simulation that lets the
  engine write only as many bytes as the "disk" has room for, then raises ``ENOSPC``;
* ``failing_write``: always simulated, to place a failure at an exact byte or step.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from utils.training.engine import atomic, mirror

__all__ = ["failing_write", "read_only_folder", "small_disk"]

_real_open = open


def _run_mount(*args: str) -> bool:
    try:
        done = subprocess.run(["mount", *args], capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _unmount(folder: Path) -> None:
    for flags in ([], ["-l"]):  # lazy as a last resort, so a busy mount never outlives the test
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if (
                subprocess.run(["umount", *flags, str(folder)], capture_output=True, timeout=20).returncode
                == 0
            ):
                return


def _can_write(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only_folder(folder: Path, *, real: bool = True) -> Iterator[str]:
    """Make ``folder`` (which exists) refuse new files; yields the mechanism used.

    ``real=False`` goes straight to the simulation (so that it is tested where mounting works too).
    """
    if real:
        folder.chmod(0o555)
        try:
            if not _can_write(folder):
                yield "chmod 555"
                return
        finally:
            folder.chmod(0o755)
    if real and _run_mount("--bind", str(folder), str(folder)):
        try:
            if _run_mount("-o", "remount,ro,bind", str(folder)) and not _can_write(folder):
                yield "read-only bind mount"
                return
        finally:
            _unmount(folder)
    with failing_write(folder, errno.EROFS, at="open"):
        yield "simulated EROFS (the atomic writer's open() patched)"


@contextlib.contextmanager
def small_disk(folder: Path, size_bytes: int, *, real: bool = True) -> Iterator[str]:
    """A folder on a disk of ``size_bytes``; yields "tmpfs" or the simulation's name (always with ``real=False``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if real and _run_mount("-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder)):
        try:
            yield "tmpfs"
        finally:
            _unmount(folder)
        return
    with failing_write(folder, errno.ENOSPC, capacity=size_bytes):
        yield "simulated ENOSPC (writes beyond the capacity fail)"


class _LimitedFileIO(io.FileIO):
    """A file that accepts ``room`` more bytes (a short write first, like a real disk), then fails."""

    def __init__(self, path, mode: str, room: int, code: int) -> None:
        super().__init__(path, mode)
        self.room, self.code = room, code

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.room <= 0 and len(view):
            raise OSError(self.code, os.strerror(self.code), self.name)
        written = super().write(view[: self.room])
        self.room -= written
        return written


def _used_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False))


@contextlib.contextmanager
def failing_write(
    folder: Path, code: int, *, at: str = "write", room: int = 0, capacity: int | None = None
) -> Iterator[str]:
    """Make the engine's atomic save into ``folder`` fail with ``OSError(code)``.

    Args:
        at: "open" (creating the temporary file fails), "write" (after ``room`` bytes,
            or once the folder holds ``capacity`` bytes), "fsync" or "replace".
    """
    folder = Path(folder).resolve()

    def ours(path) -> bool:
        return Path(path).resolve().parent == folder

    def fake_open(path, mode="r", *args, **kwargs):
        if not ours(path) or not any(flag in mode for flag in "wxa+"):
            return _real_open(path, mode, *args, **kwargs)
        if at == "open":
            raise OSError(code, os.strerror(code), str(path))
        if at != "write":
            return _real_open(path, mode, *args, **kwargs)
        space = room if capacity is None else max(0, capacity - _used_bytes(folder))
        return io.BufferedRandom(_LimitedFileIO(path, mode.replace("b", ""), space, code))

    patches = [mock.patch.object(module, "open", fake_open, create=True) for module in (atomic, mirror)]
    if at in ("fsync", "replace"):
        real = getattr(os, at)

        def fail(*args, **kwargs):
            if at == "replace" and not ours(args[1]):
                return real(*args, **kwargs)
            if at == "fsync" and not os.path.isfile(f"/proc/self/fd/{args[0]}"):
                return real(*args, **kwargs)  # the folder's fsync: the engine ignores its errors anyway
            raise OSError(code, os.strerror(code))

        patches.append(mock.patch.object(atomic.os, at, fail))
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield f"simulated {errno.errorcode[code]} at {at}"
