"""The training settings and the result of a run: plain dataclasses, stored in checkpoints as dicts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.training.precision import PRECISIONS

__all__ = ["TrainConfig", "TrainingRun"]


@dataclass
class TrainConfig:
    """The training settings; stored in every checkpoint under ``config["training"]``."""

    epochs: int = 4
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # 0 turns clipping off
    max_batches_per_epoch: int | None = None
    eval_batches: int | None = 20  # validation batches per evaluation (None: the whole split)
    save_every_steps: int = 0  # 0: checkpoints only at epoch ends
    keep_best: int = 1
    keep_last: int = 2
    seed: int = 1337
    mixed_precision: str = "auto"  # "auto" | "off" | "bf16" | "fp16"
    device: str = "auto"
    stop_after_epochs: int | None = None  # end this session early; the LR schedule still plans `epochs`
    stop_on_save_error: bool = False
    # Where the first weights came from (Cell 3's INIT_FROM): "scratch", a checkpoint path or a hub name.
    init_from: str = "scratch"
    async_save: bool = False  # True: the loop waits only for a copy to host memory; a thread writes the file
    # a second folder (Google Drive) every checkpoint is copied to, in the background
    mirror_dir: str | None = None

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "keep_last")
        non_negative = ("weight_decay", "warmup_steps", "grad_clip", "save_every_steps", "keep_best")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("max_batches_per_epoch", "eval_batches", "stop_after_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1 or None, got {getattr(self, name)!r}")
        if self.learning_rate <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"need learning_rate > 0 and 0 <= min_lr_ratio <= 1, got {self.learning_rate=}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.mixed_precision must be one of {PRECISIONS}")
        self._check_saving()

    def _check_saving(self) -> None:
        if not isinstance(self.async_save, bool):
            raise ValueError(f"TrainConfig.async_save must be True or False, got {self.async_save!r}")
        if self.mirror_dir is not None:
            if not isinstance(self.mirror_dir, (str, os.PathLike)) or not str(self.mirror_dir).strip():
                raise ValueError(
                    f"TrainConfig.mirror_dir must be a folder path, or None for no mirror, got {self.mirror_dir!r}"
                )
            self.mirror_dir = str(self.mirror_dir)  # stored in checkpoints: a plain string

    # The save rule lives here, used by the training loop and by the notebook's plan (Cell 26),
    # so the number of checkpoints the plan announces is the number the loop writes.

    def last_epoch(self, first_epoch: int) -> int:
        """The epoch index this session stops before: ``epochs``, or earlier with ``stop_after_epochs``."""
        if self.stop_after_epochs is None:
            return max(first_epoch, self.epochs)
        return max(first_epoch, min(self.epochs, first_epoch + self.stop_after_epochs))

    def mid_epoch_save_due(self, global_step: int, batch_in_epoch: int, batches_per_epoch: int) -> bool:
        """Whether the step that just finished gets a mid-epoch checkpoint.

        Every ``save_every_steps`` optimizer steps, counted across the whole run (not per
        epoch, so the cadence survives a resume), except on an epoch's last batch: the
        epoch-end checkpoint, written right after, covers that step.

        Args:
            global_step: optimizer steps so far, this one included.
            batch_in_epoch: batches of this epoch trained so far, this one included.
            batches_per_epoch: batches in one epoch.
        """
        every = self.save_every_steps
        return bool(every) and global_step % every == 0 and batch_in_epoch < batches_per_epoch

    def planned_saves(
        self, batches_per_epoch: int, *, start_epoch: int = 0, start_batch: int = 0, start_step: int = 0
    ) -> int:
        """Checkpoints one session writes from the given position (none failing): mid-epoch and epoch-end.

        Args:
            batches_per_epoch: batches in one epoch.
            start_epoch, start_batch, start_step: where the session starts (a resume's position).
        """
        if not self.save_every_steps:
            return len(range(start_epoch, self.last_epoch(start_epoch)))
        saves, step = 0, start_step
        for epoch in range(start_epoch, self.last_epoch(start_epoch)):
            first = min(start_batch, batches_per_epoch) if epoch == start_epoch else 0
            for done in range(first + 1, batches_per_epoch + 1):
                step += 1
                saves += self.mid_epoch_save_due(step, done, batches_per_epoch)
            saves += 1  # the epoch-end checkpoint
        return saves


@dataclass
class TrainingRun:
    """What :func:`train` did. ``checkpoints`` lists every file written (retention may remove some)."""

    history: list[dict[str, Any]]
    step_losses: list[float]
    checkpoints: list[Path] = field(default_factory=list)
    global_step: int = 0
    epochs_completed: int = 0
    best_val_loss: float | None = None
    best_checkpoint: Path | None = None
    interrupted: bool = False
    stop_reason: str | None = None
    save_failures: list[str] = field(default_factory=list)
    resumed_from: Path | None = None
    elapsed_s: float = 0.0
    save_wait_s: float = 0.0  # time the loop waited for a previous background save to finish
    mirror: Any = None  # the mirror's engine.mirror.MirrorStatus at the end (None: no mirror)

    @property
    def train_losses(self) -> list[float | None]:
        return [row.get("train_loss") for row in self.history]

    @property
    def val_losses(self) -> list[float | None]:
        return [row.get("val_loss") for row in self.history]

    @property
    def learning_rates(self) -> list[float | None]:
        return [row.get("learning_rate") for row in self.history]
