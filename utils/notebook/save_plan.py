"""Cell 26, second half: what saving costs this run, told before it starts.

* **Background saves** (``ASYNC_SAVE``) hold a copy of the training state in host memory
  between saves: the plan says how much.
* **The mirror** copies every checkpoint; at the write speed Cell 6 measured, the plan says how
  long one copy takes, and warns when checkpoints come faster than that (the mirror then
  falls behind and skips files that local retention deleted before their turn).
* **Google Drive's trash**: a file deleted through the Drive mount is moved to Drive's trash
  and still counts against the user's storage quota until the trash is emptied. Retention
  deletes old checkpoints after every save, so the plan estimates the trash a run creates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from utils.notebook.planning import STEP_OVERHEAD, TrainingPlan, format_bytes, format_duration

__all__ = ["SavePlan", "plan_saving"]


@dataclass(frozen=True)
class SavePlan:
    """Memory, mirror time and Drive trash of this run's checkpoints."""

    async_save: bool
    snapshot_bytes: int
    checkpoint_bytes: int
    save_interval_s: float | None  # the shortest time between two saves (None: speed unknown)
    seconds_per_step: float | None
    mirror_dir: str | None = None
    mirror_bytes_per_s: float | None = None
    deleted_files: int = 0  # files retention deletes this session from the folder on Drive (at most)
    trash_folder: str | None = None  # the folder on Drive whose deletions go to the trash

    @property
    def copy_s(self) -> float | None:
        """Seconds one mirror copy takes at the measured speed."""
        if not self.mirror_dir or not self.mirror_bytes_per_s:
            return None
        return self.checkpoint_bytes / self.mirror_bytes_per_s

    @property
    def mirror_keeps_up(self) -> bool | None:
        if self.copy_s is None or self.save_interval_s is None:
            return None
        return self.save_interval_s >= self.copy_s

    def lines(self) -> list[str]:
        lines = [self._save_line()]
        if self.copy_s is not None:
            lines.append(
                f"☁️  Mirror: one copy of ~{format_bytes(self.checkpoint_bytes)} to {self.mirror_dir} takes "
                f"~{format_duration(self.copy_s)} at the measured {self.mirror_bytes_per_s / 1e6:.0f} MB/s "
                "(in the background: training does not wait for it)"
            )
        if self.mirror_keeps_up is False:
            lines.append(self._behind_warning())
        if self.trash_folder and self.deleted_files:
            lines.append(
                f"🗑️  Drive trash: retention will delete up to {self.deleted_files} checkpoint(s) "
                f"(~{format_bytes(self.deleted_files * self.checkpoint_bytes)}) from {self.trash_folder} this "
                "session. Drive moves them to its trash, where they still count against your storage quota "
                "until the trash is emptied (drive.google.com > Trash > Empty trash; docs/durability.md)."
            )
        return lines

    def _save_line(self) -> str:
        if not self.async_save:
            return "💾 Saves: synchronous (ASYNC_SAVE = False): training waits until each file is written"
        return (
            f"💾 Saves: in the background (ASYNC_SAVE): training waits only for a copy of the state to host "
            f"memory; that copy needs ~{format_bytes(self.snapshot_bytes)} of RAM, held between saves"
        )

    def _behind_warning(self) -> str:
        every = ""
        if self.seconds_per_step:
            steps = math.ceil(self.copy_s / (STEP_OVERHEAD * self.seconds_per_step))
            every = f" Raise SAVE_EVERY_STEPS to at least {steps} for every checkpoint to reach the mirror."
        return (
            f"⚠️  A checkpoint is saved every ~{format_duration(self.save_interval_s)}, but a mirror copy takes "
            f"~{format_duration(self.copy_s)}: the mirror will fall behind, and checkpoints that retention "
            f"deletes locally before their turn are never copied (the newest and the best still are).{every}"
        )


def plan_saving(
    plan: TrainingPlan,
    *,
    async_save: bool,
    snapshot_bytes: int,
    mirror_dir: str | None = None,
    mirror_report=None,
    checkpoint_folder_report=None,
    checkpoint_on_drive: bool = False,
) -> SavePlan:
    """Assemble Cell 26's saving plan from the training plan and Cell 6's folder reports.

    Args:
        plan: Cell 26's TrainingPlan (saves, batches, measured speed, checkpoint size).
        async_save: the ASYNC_SAVE setting.
        snapshot_bytes: host memory of one snapshot (``planning.checkpoint_size_bytes(model)``).
        mirror_dir: the MIRROR_DIR after Cell 4 (None or "": no mirror).
        mirror_report: Cell 6's ``durability.MirrorReport`` (its write speed, checkpoints, Drive).
        checkpoint_folder_report: Cell 6's ``FolderReport`` (checkpoints already in the folder).
        checkpoint_on_drive: the checkpoint folder itself is on Drive (no local disk this session).

    Returns:
        The SavePlan.
    """
    kept = plan.kept_checkpoints
    trash_folder, deleted = None, 0
    if mirror_dir and mirror_report is not None and mirror_report.on_drive:
        trash_folder, deleted = mirror_dir, max(0, mirror_report.checkpoints + plan.saves - kept)
    elif checkpoint_on_drive and checkpoint_folder_report is not None:
        existing = checkpoint_folder_report.checkpoints
        trash_folder, deleted = str(checkpoint_folder_report.path), max(0, existing + plan.saves - kept)
    return SavePlan(
        async_save=async_save,
        snapshot_bytes=snapshot_bytes if async_save else 0,
        checkpoint_bytes=plan.checkpoint_bytes,
        save_interval_s=_save_interval(plan),
        seconds_per_step=plan.seconds_per_step,
        mirror_dir=mirror_dir or None,
        mirror_bytes_per_s=getattr(mirror_report, "write_bytes_per_s", None),
        deleted_files=deleted,
        trash_folder=trash_folder,
    )


def _save_interval(plan: TrainingPlan) -> float | None:
    """The shortest time between two saves: SAVE_EVERY_STEPS steps, or one epoch."""
    if plan.seconds_per_step is None:
        return None
    steps = plan.batches_per_epoch
    if 0 < plan.save_every_steps < plan.batches_per_epoch:
        steps = plan.save_every_steps
    return STEP_OVERHEAD * plan.seconds_per_step * steps
