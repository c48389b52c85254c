"""Shared fixtures for the notebook helpers' tests: a tiny model and a folder of its checkpoints."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from utils.model import GPT, GPTConfig
from utils.training.engine.checkpoint import save_checkpoint

TINY = dict(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
# (epoch, global_step, train_loss, val_loss); the second one is the best
RUNS = [(0, 10, 4.0, 3.5), (1, 20, 3.0, 2.5), (2, 30, 2.8, 2.7)]


@pytest.fixture
def tiny_config() -> GPTConfig:
    return GPTConfig(**TINY)


@pytest.fixture
def tiny_model(tiny_config) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config)


@pytest.fixture
def val_batches() -> list:
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(256, (2, 16), generator=generator)
    return [(x, torch.roll(x, -1, dims=1))]


@pytest.fixture
def checkpoint_dir(tmp_path, tiny_model, tiny_config):
    """Three checkpoints with different weights and metrics; epoch 1 has the best val_loss."""
    folder = tmp_path / "ckpt"
    history = []
    for epoch, step, train_loss, val_loss in RUNS:
        with torch.no_grad():
            tiny_model.transformer.wte.weight.add_(0.01)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "learning_rate": 1e-3}
        history.append({"epoch": epoch, "global_step": step, **metrics})
        save_checkpoint(
            folder, tiny_model, None, epoch=epoch, global_step=step, metrics=metrics, history=list(history),
            config={"model": tiny_config.to_dict()}, retention=None, when=dt.datetime(2025, 1, 1, 0, 0, epoch),
            step_losses=torch.linspace(5, train_loss, step, dtype=torch.float64),
        )  # fmt: skip
    return folder


@pytest.fixture
def same_step_runs(tmp_path, tiny_model):
    """Two runs' checkpoints at the same step: the older has the better val_loss (listed first).

    Returns the folder and the newer file, which RESUME = "latest" picks.
    """
    folder = tmp_path / "same-step"
    paths = [
        save_checkpoint(
            folder,
            tiny_model,
            None,
            epoch=2,
            global_step=30,
            retention=None,
            when=dt.datetime(2025, 1, day),
            metrics={"train_loss": 3.0, "val_loss": val_loss, "learning_rate": 1e-3},
        )  # fmt: skip
        for day, val_loss in ((1, 2.0), (2, 3.0))
    ]
    return folder, paths[1]
