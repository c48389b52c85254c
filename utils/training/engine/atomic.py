"""Atomic file writes: a temporary file in the same folder, fsync, rename, fsync the folder.

A reader (or a later session) sees either the complete new file or nothing:
``os.replace`` is atomic within one file system, and the data is on disk
before the name appears. A writer killed at any instant leaves at most a
temporary file (``naming.temporary_path_for``), which the listing ignores and
:func:`remove_stale_temporary_files` deletes once its writer is dead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .naming import temporary_path_for, writer_pid

__all__ = ["atomic_write", "free_space_text", "fsync_directory", "remove_stale_temporary_files"]


def atomic_write(final_path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``final_path`` atomically through ``write(file)``.

    Args:
        final_path: where the file must appear.
        write: fills the file object it is given (opened "w+b", so it may read back).

    Returns:
        ``final_path``.

    Raises:
        Whatever ``write`` or the file system raises (typically OSError); the
        temporary file is removed first and ``final_path`` is untouched.
    """
    temporary = temporary_path_for(final_path)
    try:
        with open(temporary, "xb+") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes reach the disk before the name does
        os.replace(temporary, final_path)
    except BaseException:  # KeyboardInterrupt included: never leave our temporary file behind
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    fsync_directory(final_path.parent)
    return final_path


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort.

    Some file systems (FUSE mounts such as Google Drive, Windows) cannot fsync a
    folder. The file itself is already complete then, so this is not an error.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be saving right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temporary_files(folder: Path) -> list[Path]:
    """Delete temporary files in ``folder`` whose writer process no longer runs.

    A temporary file of a live process (a concurrent save) is never touched.
    Files on a folder shared between machines (Drive) may name a pid of the
    other machine; such a pid is almost never alive here, so they are cleaned.
    Temporary *folders* (a sharded save killed before its rename, a folder removal
    killed half-way: see ``sharded_folder``) are deleted the same way.

    Returns:
        The files (and folders) removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = writer_pid(entry.name)
        if pid is None or _process_alive(pid):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.remove(entry.path)
        if not os.path.lexists(entry.path):
            removed.append(Path(entry.path))
    return removed


def free_space_text(folder: Path) -> str:
    """``"12.3 GB free"`` for the disk holding ``folder``, or ``""`` when unknown."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return ""
    return f"{free / 1e9:.1f} GB free"
