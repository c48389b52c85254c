"""Builders for the loader's tests: a tiny GPT, checkpoint files of every kind, model snapshots."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from utils.model.gpt import GPT, config_for_preset
from utils.training.engine.format import build_checkpoint

METRICS = {"train_loss": 1.25, "val_loss": 1.5, "learning_rate": 5e-5}
TIMESTAMP = "2025-01-22T06:54:55"


def tiny_gpt(seed: int = 0, **overrides) -> GPT:
    """The ``tiny`` preset (dropout off, so outputs are deterministic)."""
    torch.manual_seed(seed)
    return GPT(config_for_preset("tiny", dropout=0.0, **overrides))


def full_checkpoint(model: nn.Module, state: dict | None = None, **extra) -> dict:
    """A checkpoint dict in the current format, with AdamW state and the model config."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    config = {"model": model.config.to_dict(), "training": {"epochs": 10}} if hasattr(model, "config") else {}
    return build_checkpoint(
        model_state=state if state is not None else model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        epoch=9,
        global_step=9,
        metrics=METRICS,
        config=config,
        timestamp=TIMESTAMP,
        **extra,
    )


def save_full(path: Path, model: nn.Module, state: dict | None = None) -> Path:
    torch.save(full_checkpoint(model, state), path)
    return path


def save_legacy(path: Path, model: nn.Module) -> Path:
    """As the notebook's earlier training cell wrote it: no format_version, no config."""
    legacy = {
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": None,
        "epoch": 4,
        "global_step": 40,
        "timestamp": TIMESTAMP,
        "metrics": METRICS,
    }
    torch.save(legacy, path)
    return path


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every tensor of the model (parameters and buffers)."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    """Bit-for-bit: same names, and every tensor torch.equal to the snapshot."""
    after = model.state_dict()
    assert list(after) == list(before)
    changed = [name for name, tensor in after.items() if not torch.equal(tensor, before[name])]
    assert not changed, f"tensors changed by a failed load: {changed}"


def assert_same_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Every model tensor equals ``state`` (converted to the model's dtype)."""
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name].to(tensor.dtype)), name
