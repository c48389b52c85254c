"""A tiny GPT and a folder of its checkpoints with known weights, for the analysis tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import torch

from utils.model import GPT, GPTConfig
from utils.training.engine.checkpoint import save_checkpoint

TINY = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**TINY))


def save(folder: Path, model: torch.nn.Module, epoch: int, val_loss: float = 3.0) -> Path:
    """A full checkpoint of ``model`` (epoch ``epoch``, step 10 per epoch)."""
    metrics = {"train_loss": val_loss + 0.1, "val_loss": val_loss, "learning_rate": 1e-3}
    return save_checkpoint(
        folder, model, None, epoch=epoch, global_step=10 * (epoch + 1), metrics=metrics, retention=None,
        config={"model": dict(TINY)}, when=dt.datetime(2025, 1, 1, 0, 0, epoch),
    )  # fmt: skip


@pytest.fixture
def model() -> GPT:
    return tiny_model()


@pytest.fixture
def three_files(tmp_path, model) -> list[Path]:
    """Three checkpoints of one model, its weights moved a different amount each time."""
    paths = []
    generator = torch.Generator().manual_seed(5)
    for epoch in range(3):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * 0.05 * (epoch + 1))
        paths.append(save(tmp_path / "ckpt", model, epoch, val_loss=3.0 - epoch * 0.2))
    return paths


@pytest.fixture
def batches() -> list:
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(TINY["vocab_size"], (3, 2, TINY["block_size"]), generator=generator)
    return [(xb, torch.roll(xb, -1, dims=1)) for xb in x]
