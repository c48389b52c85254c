"""What one call of train() works with: its session and position, checked and prepared before the first step.

``open_session`` checks the settings against the data, moves the model (and any restored
optimizer state) to the device, picks the precision and its grad scaler, creates the checkpoint
folder and prints what changed since a resumed checkpoint; ``Position`` is where the run is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from utils.data.batches import EpochBatches
from utils.training.background import LoopSaves
from utils.training.distributed.context import SINGLE_PROCESS, DistributedContext
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.prefixes import unwrap_model
from utils.training.engine.state_dict_diff import model_config_dict
from utils.training.precision import build_grad_scaler, resolve_device, resolve_precision
from utils.training.resume import ResumeState, describe_changes
from utils.training.settings import TrainConfig, TrainingRun


@dataclass
class Session:
    """Everything one call of train() works with (keeps the helpers' signatures short)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    amp_dtype: torch.dtype | None
    device: torch.device
    config: TrainConfig
    checkpoint_dir: Path
    batches: EpochBatches
    stored_config: dict[str, Any]
    run: TrainingRun
    progress: bool
    written_val_losses: dict[Path, float | None] = field(default_factory=dict)  # this run's files
    distributed: DistributedContext = SINGLE_PROCESS  # which rank this is; how it averages and saves
    run_id: str | None = None  # stored in every checkpoint; retention prunes this run's files only
    saves: LoopSaves | None = None  # background saves and the mirror (set by train())
    failed_saves: set[Path] = field(default_factory=set)  # background saves that failed after they started


def open_session(
    model, optimizer, scheduler, batches, val_batches, config, checkpoint_dir, *, scaler, resume, progress,
    model_config,
):  # fmt: skip
    """Check the settings, prepare the device, precision and folder; the session train() runs with.

    Raises:
        TypeError: ``config`` is not a TrainConfig, or ``model_config`` cannot be stored.
        ValueError: the batch sizes differ, the validation set is empty, or the device is unusable.
        CheckpointSaveError: the checkpoint folder cannot be created.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if batches.batch_size != config.batch_size:
        raise ValueError(
            f"train_batches uses batch_size={batches.batch_size} but config.batch_size={config.batch_size}; "
            "build both from the same setting"
        )
    if not val_batches:
        raise ValueError("val_batches is empty: training needs at least one validation batch")
    device = resolve_device(config.device)
    _move_to(model, optimizer, device)
    amp_dtype = resolve_precision(config.mixed_precision, device)
    if scaler is None and amp_dtype is torch.float16:
        scaler = build_grad_scaler(config.mixed_precision, device)
        if resume is not None and resume.scaler_state is not None:
            scaler.load_state_dict(resume.scaler_state)
    folder = _prepare_folder(checkpoint_dir)
    for line in describe_changes(resume, config, batches, scheduler) if resume else []:
        print(f"⚠️  {line}")
    run = TrainingRun(history=[], step_losses=[])
    stored = {"training": asdict(config), "model": _model_config_dict(model, model_config)}
    return Session(
        model, optimizer, scheduler, scaler, amp_dtype, device, config, folder, batches, stored, run, progress
    )


def _prepare_folder(checkpoint_dir: str | Path) -> Path:
    """Create the folder now, so a bad path fails before any training time is spent."""
    folder = Path(checkpoint_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointSaveError(
            folder,
            f"cannot create the checkpoint folder ({type(error).__name__}: {error})",
            fix="set CHECKPOINT_DIR to a writable folder (on Colab, mount Google Drive first)",
        ) from error
    return folder


def _move_to(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move the model, and any optimizer state already loaded, to ``device``."""
    model.to(device)
    for state in optimizer.state.values():
        for key, value in state.items():
            # AdamW keeps its "step" counter on the CPU unless it is capturable/fused.
            if isinstance(value, torch.Tensor) and (key != "step" or value.dim() > 0):
                state[key] = value.to(device)


def _model_config_dict(model: torch.nn.Module, model_config: Any) -> dict[str, Any]:
    """The model config stored in checkpoints; {} for a model without one (Cell 34 then cannot rebuild it)."""
    if model_config is None:
        return model_config_dict(unwrap_model(model)) or {}
    converted = model_config_dict(SimpleNamespace(config=model_config))  # the engine's one conversion rule
    if converted is None:
        raise TypeError(
            f"model_config must be a GPTConfig, a dataclass or a mapping, got {type(model_config).__name__}"
        )
    return converted


def last_epoch_to_run(config: TrainConfig, first_epoch: int) -> int:
    """The epoch to stop before (``config.last_epoch``); says so when nothing is left to train."""
    if first_epoch >= config.epochs:
        print(
            f"Nothing to train: the checkpoint already completed {first_epoch} epoch(s) and EPOCHS="
            f"{config.epochs}. Raise EPOCHS to train further."
        )
    return config.last_epoch(first_epoch)


@dataclass
class Position:
    """Where the run is: counters and the histories that checkpoints carry."""

    epoch: int
    batch_in_epoch: int
    global_step: int
    history: list[dict[str, Any]]
    step_losses: list[float]

    @classmethod
    def start(cls, resume: ResumeState | None, batches: EpochBatches) -> Position:
        if resume is None:
            return cls(0, 0, 0, [], [])
        batch = min(resume.batch_in_epoch, batches.batches_per_epoch)
        return cls(resume.epoch, batch, resume.global_step, list(resume.history), list(resume.step_losses))

    @property
    def best_val_loss(self) -> float | None:
        losses = [row["val_loss"] for row in self.history if row.get("val_loss") is not None]
        return min(losses) if losses else None
