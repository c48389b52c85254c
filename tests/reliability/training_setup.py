"""A real training run of the tiny preset, small enough to start, kill and resume many times.

Used by the kill driver (in forked children) and by the full-disk tests (in-process).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from utils.data import EpochBatches, get_tokenizer, load_corpus, split_tokens, validation_batches
from utils.model import GPT, config_for_preset
from utils.training import (
    TrainConfig,
    TrainingRun,
    build_optimizer,
    build_scheduler,
    resolve_resume_source,
    restore_training_state,
    train,
)

__all__ = ["Data", "load_data", "run_training", "training_config"]

BLOCK_SIZE = 32  # shorter than the preset's 64: steps stay fast, the model is unchanged


@dataclass(frozen=True)
class Data:
    train: torch.Tensor
    val: torch.Tensor


def load_data(characters: int = 8_000) -> Data:
    """Byte tokens of the bundled corpus, split 90/10."""
    train_tokens, val_tokens = split_tokens(get_tokenizer("bytes").encode(load_corpus()[:characters]), 0.1)
    return Data(train_tokens, val_tokens)


def training_config(**overrides) -> TrainConfig:
    """Small batches, a checkpoint after every step, and nothing deleted (keep-all retention)."""
    config = TrainConfig(
        epochs=1000, batch_size=2, learning_rate=3e-3, warmup_steps=2, max_batches_per_epoch=6,
        eval_batches=1, save_every_steps=1, keep_best=1_000_000, keep_last=1_000_000, seed=11,
        mixed_precision="off", device="cpu",
    )  # fmt: skip
    return replace(config, **overrides)


def run_training(folder: Path, data: Data, config: TrainConfig, resume: str = "latest") -> TrainingRun:
    """Build the model, resume from ``resume`` (RESUME setting: "latest", "none" or a path), train.

    Returns:
        What ``train`` returned.
    """
    torch.manual_seed(config.seed)
    model = GPT(config_for_preset("tiny"))
    batches = EpochBatches(
        data.train, config.batch_size, BLOCK_SIZE, config.seed, config.max_batches_per_epoch
    )
    val = validation_batches(data.val, config.batch_size, BLOCK_SIZE, config.eval_batches)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = build_scheduler(optimizer, config.warmup_steps, config.epochs * batches.batches_per_epoch)
    source = (
        resolve_resume_source(resume, folder)
        if Path(folder).is_dir() and any(Path(folder).iterdir())
        else None
    )
    state = restore_training_state(source, model, optimizer, scheduler) if source is not None else None
    return train(
        model, optimizer, scheduler, batches, val, config, folder, resume_state=state, progress=False
    )
