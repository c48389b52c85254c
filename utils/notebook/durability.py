"""Cells 4, 6, 33 and 34: local first, the mirror, and a fresh runtime after a disconnect.

Training writes checkpoints to the local disk (fast, and the folder every later cell reads)
and the engine copies each one to the mirror folder in the background (Google Drive, or
any ``MIRROR_DIR``). After a disconnect the local disk is gone and only the mirror is left:
:func:`local_first` (Cell 4) then copies the mirror's checkpoints back into the empty local
folder, verified, so that ``RESUME = "latest"`` and Cells 33-35 work exactly as before.
:func:`check_mirror_folder` (Cell 6) measures the mirror's write speed for the plan, and
:func:`wait_for_pending_saves` (Cells 33, 34) makes sure nothing is still being written.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from utils.notebook.planning import format_bytes, format_duration
from utils.notebook.runtime import DEFAULT_DRIVE_ROOT
from utils.training.engine.async_save import wait_for_background_saves
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.mirror import mirror_copy, wait_for_mirrors
from utils.training.engine.naming import temporary_path_for
from utils.training.engine.recovery import scan_checkpoints

__all__ = [
    "PROBE_BYTES",
    "Storage",
    "local_first",
    "MirrorReport",
    "check_mirror_folder",
    "probe_write_speed",
    "is_on_drive",
    "wait_for_pending_saves",
]

PROBE_BYTES = 16 << 20  # big enough to see the mount's throughput, small enough to cost nothing (Drive trash)
# Copying back must leave room for training's own saves: the restored files plus this many more.
RESTORE_HEADROOM_FILES = 2


def is_on_drive(path: str | os.PathLike | None, drive_root: str = DEFAULT_DRIVE_ROOT) -> bool:
    """True for a path inside the mounted Google Drive (deletions there go to Drive's trash)."""
    if not path:
        return False
    resolved, root = os.path.realpath(Path(path).expanduser()), os.path.realpath(drive_root)
    return resolved == root or resolved.startswith(root + os.sep)


@dataclass(frozen=True)
class Storage:
    """Where this session's checkpoints live (Cell 4): the folder training writes, and its mirror."""

    checkpoint_dir: str
    mirror_dir: str | None
    restored: tuple[str, ...] = ()
    restored_bytes: int = 0
    failed: tuple[str, ...] = ()  # "<name>: <reason>"
    seconds: float = 0.0
    direct: str | None = None  # why this session reads and writes the mirror folder directly

    def lines(self) -> list[str]:
        if self.direct:
            return [f"⚠️  {self.direct}"]
        if not self.mirror_dir:
            return []
        lines = []
        if self.restored:
            lines.append(
                f"♻️  Fresh runtime: {self.checkpoint_dir} was empty, so the mirror's {len(self.restored)} "
                f"checkpoint(s) were copied back ({format_bytes(self.restored_bytes)} in "
                f'{format_duration(self.seconds)}, each verified): RESUME = "latest" and Cells 33-35 use them'
            )
        lines += [f"❌ Not copied back: {failure} (it stays in the mirror)" for failure in self.failed]
        lines.append(
            f"🛟 A disconnect keeps every checkpoint already copied to {self.mirror_dir}; it loses the local "
            "folder and a copy still in progress (the mirror never shows half a file)."
        )
        return lines


def local_first(checkpoint_dir: str, mirror_dir: str | None) -> Storage:
    """Cell 4: keep writing locally; on a fresh runtime, first copy the mirror's checkpoints back.

    When the local folder holds no checkpoint and the mirror does (the runtime was recycled),
    each valid mirror checkpoint is copied into the local folder (temporary name, fsync,
    size and CRC-32 compared, rename), so every later cell finds them where it always looks.
    Where the local disk lacks room for them, this session reads and writes the mirror folder
    directly instead (and says so): nothing is lost, only saves are slower.

    Args:
        checkpoint_dir: the local folder training writes.
        mirror_dir: the mirror folder (None or "": no mirror, nothing to do).

    Returns:
        The folders to use (``CHECKPOINT_DIR``, ``MIRROR_DIR``) and what was copied back.
    """
    if not mirror_dir:
        return Storage(checkpoint_dir, None)
    local = Path(checkpoint_dir).expanduser()
    if scan_checkpoints(local).checkpoints:
        return Storage(checkpoint_dir, mirror_dir)
    found = scan_checkpoints(Path(mirror_dir).expanduser()).checkpoints
    if not found:
        return Storage(checkpoint_dir, mirror_dir)
    needed = sum(info.size_bytes for info in found)
    free = _free_bytes(local)
    largest = max(info.size_bytes for info in found)
    if free is not None and needed + RESTORE_HEADROOM_FILES * largest > free:
        why = (
            f"The local disk has {format_bytes(free)} free, too little to copy back the mirror's "
            f"{len(found)} checkpoint(s) ({format_bytes(needed)}): this session reads and writes checkpoints "
            f"directly in {mirror_dir} (slower saves, no local copy). Free disk space or lower KEEP_LAST to "
            "return to local first."
        )
        return Storage(str(mirror_dir), None, direct=why)
    return _restore(checkpoint_dir, mirror_dir, found)


def _restore(checkpoint_dir: str, mirror_dir: str, found) -> Storage:
    local = Path(checkpoint_dir).expanduser()
    started, restored, failed, size = time.perf_counter(), [], [], 0
    for info in found:
        try:
            copy = mirror_copy(info.path, local)
        except OSError as error:  # one unreadable file does not stop the others
            failed.append(f"{info.name}: {error.strerror or error}")
            continue
        restored.append(copy.name)
        size += copy.stat().st_size
    seconds = time.perf_counter() - started
    return Storage(checkpoint_dir, mirror_dir, tuple(restored), size, tuple(failed), seconds)


def _free_bytes(folder: Path) -> int | None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def probe_write_speed(folder: str | os.PathLike, nbytes: int = PROBE_BYTES) -> float:
    """Write ``nbytes`` to a hidden temporary file in ``folder``, fsync, delete; returns bytes per second.

    The probe uses the engine's temporary-file name, so a probe killed half-way is ignored
    by the listing and removed by the next save, like a half-written checkpoint.

    Raises:
        OSError: the folder cannot be written.
    """
    probe = temporary_path_for(Path(folder) / "write-speed-probe")
    block = os.urandom(min(nbytes, 1 << 20))  # random: no file system can compress it away
    started = time.perf_counter()
    try:
        with open(probe, "xb", buffering=0) as file:
            written = 0
            while written < nbytes:
                written += file.write(block[: nbytes - written])
            os.fsync(file.fileno())
        seconds = time.perf_counter() - started
    finally:
        if probe.exists():
            probe.unlink()
    return nbytes / max(seconds, 1e-9)


@dataclass
class MirrorReport:
    """What Cell 6 found out about the mirror folder (``path`` None: no mirror)."""

    path: Path | None
    writable: bool = False
    free_bytes: int | None = None
    checkpoints: int = 0
    write_bytes_per_s: float | None = None
    on_drive: bool = False
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if self.path is None:
            return [
                "☁️  Mirror: none (set MIRROR_DIR in Cell 3, or tick USE_DRIVE in Cell 4, for a second copy)"
            ]
        lines = [f"☁️  Mirror folder: {self.path}" + (" (Google Drive)" if self.on_drive else "")]
        if self.writable:
            free = format_bytes(self.free_bytes) if self.free_bytes is not None else "unknown"
            lines.append(
                f"   ✍️  writable | free: {free} | write speed ~{self.write_bytes_per_s / 1e6:.0f} MB/s "
                f"({format_bytes(PROBE_BYTES)} probe, fsynced) | checkpoints there: {self.checkpoints}"
            )
        lines += [f"❌ {problem}" for problem in self.problems]
        return lines

    def raise_if_unusable(self) -> None:
        """Stop the notebook here when the mirror asked for cannot be written.

        Raises:
            CheckpointSaveError: the folder cannot be created or written.
        """
        if self.problems:
            raise CheckpointSaveError(
                self.path,
                "; ".join(self.problems),
                fix="mount Google Drive again (Cell 4), or set MIRROR_DIR in Cell 3 to a writable folder "
                '(MIRROR_DIR = "" and USE_DRIVE = False: no mirror)',
            )


def check_mirror_folder(mirror_dir: str | os.PathLike | None, probe_bytes: int = PROBE_BYTES) -> MirrorReport:
    """Cell 6: create the mirror folder if needed, measure its write speed, count its checkpoints.

    Args:
        mirror_dir: the MIRROR_DIR after Cell 4 (None or "": no mirror).
        probe_bytes: the size of the write-speed probe.

    Returns:
        The report; ``problems`` is non-empty when the mirror cannot be written.
    """
    if not mirror_dir:
        return MirrorReport(None)
    folder = Path(mirror_dir).expanduser()
    report = MirrorReport(folder, on_drive=is_on_drive(folder))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        report.write_bytes_per_s = probe_write_speed(folder, probe_bytes)
        report.writable = True
    except OSError as error:
        report.problems.append(f"the mirror folder cannot be written: {error.strerror or error}")
        return report
    report.free_bytes = _free_bytes(folder)
    report.checkpoints = len(scan_checkpoints(folder).checkpoints)
    return report


def wait_for_pending_saves(out=print) -> bool:
    """Cells 33-34: wait for a checkpoint still being written, or copied to the mirror, in this kernel.

    Normally Cell 32 has waited already; this matters after Cell 32 was interrupted while
    waiting. Prints only when there was something to wait for.

    Returns:
        True when something was pending.
    """
    saves = wait_for_background_saves(timeout=0)
    mirrors = [status for status in wait_for_mirrors(timeout=0) if not status.up_to_date]
    if not saves and not mirrors:
        return False
    names = [future.path.name for future in saves] + [
        f"{s.behind} mirror copy(ies) to {s.folder}" for s in mirrors
    ]
    out(f"⏳ Waiting for {', '.join(names)} ...")
    started = time.perf_counter()
    wait_for_background_saves()
    after = wait_for_mirrors()
    out(f"✅ Done after {format_duration(time.perf_counter() - started)}")
    for future in saves:
        if future.exception() is not None:
            out(f"⚠️  CHECKPOINT NOT SAVED: {future.exception()}")
    for status in after:
        if status.failures and status.folder in {s.folder for s in mirrors}:
            out("\n".join(status.lines()))
    return True
