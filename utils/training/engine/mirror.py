"""A second copy of every checkpoint in another folder (Google Drive), made in the background.

Training writes to a fast local disk; :class:`Mirror` then copies each new file to the
mirror folder in its own thread, so a slow or failing mirror never makes training wait:

1. copy to a temporary name in the mirror folder (hidden, ignored by the listing), computing
   the CRC-32 of the bytes read from the local file;
2. fsync, drop the copy's cached pages, then read it back and compare its size and CRC-32
   with the local file's (so the comparison reads the disk, where the mount lets it);
3. rename it to the checkpoint's name (and fsync the folder, where the mount allows);
4. apply retention in the mirror folder.

So listing the mirror, even after a disconnect in the middle of a copy, shows only complete,
verified files. Retention runs there only after a successful copy, with the new copy
protected: a file on the mirror is never deleted before its successor there is complete.

A file that local retention deleted before its turn came is skipped (it was not worth keeping);
a failed copy is recorded with its reason (:class:`MirrorStatus`) and the next file is tried.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .async_save import BACKGROUND_NICE, lower_thread_priority
from .atomic import fsync_directory, remove_stale_temporary_files
from .checkpoint import apply_retention
from .naming import temporary_path_for
from .retention import RetentionPolicy

__all__ = ["Mirror", "MirrorFailure", "MirrorStatus", "copy_with_crc", "mirror_copy", "wait_for_mirrors"]

CHUNK_BYTES = 8 << 20  # large reads and writes: few system calls, and zlib releases the GIL on each
_MIRRORS: weakref.WeakSet[Mirror] = weakref.WeakSet()

# copy(source, target, buffer) -> CRC-32 of the bytes copied; injectable (a throttled copy in the benchmark)
CopyFunction = Callable[[BinaryIO, BinaryIO, bytearray], int]


def copy_with_crc(source: BinaryIO, target: BinaryIO, buffer: bytearray) -> int:
    """Copy ``source`` to ``target`` through ``buffer``; returns the CRC-32 of the bytes copied."""
    view, crc = memoryview(buffer), 0
    while True:
        count = source.readinto(view)
        if not count:
            return crc
        crc = zlib.crc32(view[:count], crc)
        target.write(view[:count])


def _crc_of(path: Path, buffer: bytearray) -> tuple[int, int]:
    """(size, CRC-32) of a file, read through ``buffer``."""
    view, crc, size = memoryview(buffer), 0, 0
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(view):
            crc = zlib.crc32(view[:count], crc)
            size += count
        _drop_cached_pages(file.fileno())
    return size, crc


def _drop_cached_pages(fd: int) -> None:
    """Tell the kernel it may drop the file's cached pages (best effort; written pages are fsynced first).

    A copy would otherwise leave gigabytes of page cache that training's memory then has to
    reclaim, and the read-back after fsync would read the cache, not the disk.
    """
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


class MirrorCopyError(OSError):
    """The copy on the mirror does not match the local file (size or CRC-32)."""


def mirror_copy(
    source: Path, folder: Path, *, copy: CopyFunction = copy_with_crc, buffer: bytearray | None = None
) -> Path:
    """Copy ``source`` into ``folder`` under the same name: verified, atomic, durable.

    Args:
        source: the local checkpoint.
        folder: the mirror folder (created when missing).
        copy: copies the bytes and returns their CRC-32 (see :func:`copy_with_crc`).
        buffer: the transfer buffer (reused between copies).

    Returns:
        The copy's path.

    Raises:
        OSError: reading, writing or renaming failed, or the copy differs (``MirrorCopyError``);
            no temporary file remains and an earlier file of that name is untouched.
    """
    buffer = buffer if buffer is not None else bytearray(CHUNK_BYTES)
    final = Path(folder) / Path(source).name
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path_for(final)
    try:
        with open(source, "rb", buffering=0) as reader:  # open: a local deletion now cannot cut the copy
            size = os.fstat(reader.fileno()).st_size
            with open(temporary, "xb", buffering=0) as writer:
                crc = copy(reader, writer, buffer)
                os.fsync(writer.fileno())
                _drop_cached_pages(writer.fileno())  # the read-back below reads the disk
            _drop_cached_pages(reader.fileno())
        copied_size, copied_crc = _crc_of(temporary, buffer)
        if (copied_size, copied_crc) != (size, crc):
            raise MirrorCopyError(
                f"the copy differs from the local file: {copied_size} bytes, CRC-32 {copied_crc:08x}; "
                f"expected {size} bytes, CRC-32 {crc:08x}"
            )
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    fsync_directory(final.parent)
    return final


@dataclass(frozen=True)
class MirrorFailure:
    """A copy that failed: the file and the reason."""

    name: str
    reason: str


@dataclass(frozen=True)
class MirrorStatus:
    """How far the mirror is: what it copied, what waits, what failed.

    ``behind_s`` is the age of the oldest local save not yet in the mirror (0 when up to date).
    """

    folder: Path
    copied: tuple[str, ...]
    queued: tuple[str, ...]
    copying: str | None
    skipped: tuple[str, ...]
    failures: tuple[MirrorFailure, ...]
    behind_s: float
    bytes_per_s: float | None  # of the last copy

    @property
    def up_to_date(self) -> bool:
        return not self.queued and self.copying is None

    @property
    def behind(self) -> int:
        """Saves not yet in the mirror (waiting or being copied)."""
        return len(self.queued) + (self.copying is not None)

    def short(self) -> str:
        """A few words for the progress line."""
        failed = f", {len(self.failures)} failed" if self.failures else ""
        if self.up_to_date:
            return f"mirror ok{failed}"
        return f"mirror {self.behind} behind ({self.behind_s:.0f} s){failed}"

    def lines(self) -> list[str]:
        """The report at the end of a run."""
        speed = f", last copy {self.bytes_per_s / 1e6:.0f} MB/s" if self.bytes_per_s else ""
        lines = [f"☁️  Mirror {self.folder}: {len(self.copied)} file(s) copied and verified{speed}"]
        if not self.up_to_date:
            waiting = ", ".join(([self.copying] if self.copying else []) + list(self.queued))
            lines.append(f"   ⏳ not in the mirror yet ({self.behind_s:.0f} s behind): {waiting}")
        if self.skipped:
            lines.append(
                f"   ⏭️  {len(self.skipped)} skipped: deleted locally by retention before their turn came"
            )
        lines += [f"   ❌ {failure.name}: {failure.reason}" for failure in self.failures]
        if self.failures:
            lines.append(
                "   The local files are complete; the mirror lacks these copies (see docs/troubleshooting.md)."
            )
        return lines


class Mirror:
    """Copies local checkpoints into ``folder`` in a background thread, in the order given.

    Args:
        folder: the mirror folder (e.g. on Google Drive).
        retention: applied in the mirror folder after each successful copy (None keeps all).
        copy: the byte copier (default :func:`copy_with_crc`; tests and benchmarks inject others).
        nice: how much to lower the copying thread's CPU priority (0: not at all).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        retention: RetentionPolicy | None = RetentionPolicy(),  # noqa: B008 (frozen, immutable)
        *,
        copy: CopyFunction = copy_with_crc,
        nice: int = BACKGROUND_NICE,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.nice = nice
        self.retention = retention
        self._copy = copy
        self._queue: collections.deque[tuple[Path, float]] = collections.deque()
        self._copying: tuple[Path, float] | None = None
        self._copied: list[str] = []
        self._skipped: list[str] = []
        self._failures: list[MirrorFailure] = []  # unresolved: a later successful copy of the file removes it
        self._news: list[MirrorFailure] = []  # not yet taken by take_new_failures()
        self._failed_paths: dict[str, Path] = {}
        self._speed: float | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._cleaned = False
        _MIRRORS.add(self)

    def enqueue(self, path: str | os.PathLike) -> None:
        """Queue a local file for copying; returns at once (never blocks, never raises)."""
        with self._lock:
            self._queue.append((Path(path), time.monotonic()))
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="checkpoint-mirror")
                self._thread.start()

    def retry_failed(self) -> int:
        """Queue again the files whose copy failed and that still exist locally; returns how many."""
        with self._lock:
            again = [path for path in self._failed_paths.values() if path.exists()]
            self._failed_paths = {}
        for path in again:
            self.enqueue(path)
        return len(again)

    def take_new_failures(self) -> list[MirrorFailure]:
        """The failures since the last call (oldest first): each is returned once, to be reported."""
        with self._lock:
            news, self._news = self._news, []
        return news

    def status(self) -> MirrorStatus:
        """A consistent picture of the mirror right now."""
        with self._lock:
            now = time.monotonic()
            waiting = ([self._copying] if self._copying else []) + list(self._queue)
            return MirrorStatus(
                folder=self.folder,
                copied=tuple(self._copied),
                queued=tuple(path.name for path, _ in self._queue),
                copying=self._copying[0].name if self._copying else None,
                skipped=tuple(self._skipped),
                failures=tuple(self._failures),
                behind_s=max((now - since for _, since in waiting), default=0.0),
                bytes_per_s=self._speed,
            )

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued file is copied (or failed); False when ``timeout`` ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: self._thread is None, timeout)

    # ------------------------------------------------------------------ the copying thread

    def _drain(self) -> None:
        lower_thread_priority(self.nice)
        buffer = bytearray(CHUNK_BYTES)
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    self._copying = None
                    self._idle.notify_all()
                    return
                self._copying = self._queue.popleft()
            self._copy_one(self._copying[0], buffer)

    def _copy_one(self, source: Path, buffer: bytearray) -> None:
        if not self._cleaned:  # the temporary files of copies killed earlier (dead writers only)
            remove_stale_temporary_files(self.folder)
            self._cleaned = True
        started = time.perf_counter()
        try:
            copy = mirror_copy(source, self.folder, copy=self._copy, buffer=buffer)
        except FileNotFoundError as error:
            if not source.exists():  # retention removed it locally before its turn: nothing to keep
                with self._lock:
                    self._skipped.append(source.name)
                return
            self._fail(source, error)
            return
        except Exception as error:  # recorded and reported; the next file is still tried
            self._fail(source, error)
            return
        seconds = time.perf_counter() - started
        with self._lock:
            self._copied.append(copy.name)
            self._failures = [failure for failure in self._failures if failure.name != copy.name]
            self._speed = copy.stat().st_size / seconds if seconds > 0 else None
        if self.retention is not None:
            # Only now, with the new copy complete and verified (and protected), may older
            # copies go: the mirror never deletes a file before its successor there is complete.
            try:  # among the copies of the run this copy belongs to, as the local retention does
                apply_retention(self.folder, self.retention, protect=[copy], run_id=_run_id_of(copy))
            except Exception as error:  # the copy itself succeeded
                self._fail(source, error, what="retention in the mirror failed")

    def _fail(self, source: Path, error: BaseException, what: str = "copy failed") -> None:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        failure = MirrorFailure(source.name, f"{what}: {reason}")
        with self._lock:
            if failure not in self._failures:  # a retry that fails the same way is not news
                self._news.append(failure)
            self._failures = [known for known in self._failures if known.name != source.name] + [failure]
            if what == "copy failed":
                self._failed_paths[source.name] = source


def wait_for_mirrors(timeout: float | None = None) -> list[MirrorStatus]:
    """Wait for every mirror of this process to finish its queue; returns their status afterwards.

    Args:
        timeout: seconds to wait for each mirror; None waits until all are done.
    """
    mirrors = list(_MIRRORS)
    for mirror in mirrors:
        mirror.wait(timeout)
    return [mirror.status() for mirror in mirrors]


def _run_id_of(path: Path) -> str | None:
    """The training run a copied checkpoint belongs to (None: saved without one, or unreadable)."""
    from .sources.native import read_own_record  # sources import this module's neighbours

    try:
        record = read_own_record(path)
    except Exception:  # noqa: BLE001 -- a copy that reads as no record of ours is in no run
        return None
    return record.run_id if record is not None else None
