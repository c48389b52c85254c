"""The training settings and the result of a run: plain dataclasses, stored in checkpoints as dicts."""

from __future__ import annotations

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

    @property
    def train_losses(self) -> list[float | None]:
        return [row.get("train_loss") for row in self.history]

    @property
    def val_losses(self) -> list[float | None]:
        return [row.get("val_loss") for row in self.history]

    @property
    def learning_rates(self) -> list[float | None]:
        return [row.get("learning_rate") for row in self.history]
