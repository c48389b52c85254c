"""Cell 6: is the checkpoint folder usable, and does it already hold a run?"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from utils.notebook.planning import format_bytes
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.recovery import newest, scan_checkpoints
from utils.training.engine.text import safe_text

__all__ = ["FolderReport", "check_checkpoint_folder"]


@dataclass
class FolderReport:
    """What Cell 6 found out about the checkpoint folder."""

    path: Path
    created: bool
    writable: bool
    free_bytes: int
    checkpoints: int
    latest: str | None
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_unusable(self) -> None:
        """Stop the notebook here when training could not save its checkpoints.

        Raises:
            CheckpointSaveError: the folder cannot be created or written.
        """
        if self.problems:
            raise CheckpointSaveError(
                self.path, "; ".join(self.problems), fix="set CHECKPOINT_DIR in Cell 3 to a writable folder"
            )

    def lines(self) -> list[str]:
        state = "created now" if self.created else "exists"
        lines = [
            f"📂 Checkpoint folder: {self.path} ({state})",
            f"✍️  Writable: {'yes' if self.writable else 'NO'} | free disk: {format_bytes(self.free_bytes)}",
            f"💾 Checkpoints already there: {self.checkpoints}"
            + (f" (latest: {self.latest})" if self.latest else ""),
        ]
        lines += [f"   ⏭️  {line}" for line in self.skipped]
        lines += [f"❌ {line}" for line in self.problems]
        lines += [f"💡 {line}" for line in self.hints]
        return lines


def _writable(folder: Path) -> bool:
    """Really write and remove a file: permission bits lie on some mounts (Drive, read-only binds)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            return True
    except OSError:
        return False


def check_checkpoint_folder(checkpoint_dir: str | os.PathLike, resume: str = "none") -> FolderReport:
    """Create the folder if needed, test that it is writable, and look for earlier checkpoints.

    Args:
        checkpoint_dir: the CHECKPOINT_DIR setting.
        resume: the RESUME setting, for the hint about existing checkpoints.

    Returns:
        A report; ``problems`` is non-empty when training could not save there.
    """
    folder = Path(checkpoint_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        return FolderReport(folder, False, False, 0, 0, None, problems=[f"{folder} is a file, not a folder"])
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        problem = (
            f"cannot create {folder}: {error.strerror or error}. Set CHECKPOINT_DIR to a writable folder."
        )
        return FolderReport(folder, False, False, 0, 0, None, problems=[problem])
    scan = scan_checkpoints(folder)
    latest = newest(scan.checkpoints)  # the file RESUME = "latest" picks
    report = FolderReport(
        path=folder,
        created=created,
        writable=_writable(folder),
        free_bytes=shutil.disk_usage(folder).free,
        checkpoints=len(scan.checkpoints),
        latest=safe_text(latest.name, 120) if latest else None,
        skipped=[
            f"not a valid checkpoint, ignored: {safe_text(path.name, 120)} ({safe_text(reason)})"
            for path, reason in scan.skipped
        ],
    )
    if not report.writable:
        report.problems.append(f"{folder} is not writable: checkpoints cannot be saved there")
    if scan.checkpoints and str(resume).strip().lower() in ("", "none"):
        report.hints.append(
            'this folder already holds a run: set RESUME = "latest" in Cell 3 to continue it; '
            'with RESUME = "none" a new run starts and its checkpoints join these'
        )
    return report
