"""Small builders shared by the engine tests: a tiny model, saved and legacy checkpoint files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import torch
from torch import nn

from utils.model import GPT, config_for_preset
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.naming import checkpoint_filename
from utils.training.optim import build_optimizer

BASE_TIME = dt.datetime(2025, 11, 22, 6, 0, 0)


class TinyNet(nn.Module):
    """Two linear layers: enough structure for prefixes, optimizer state and shape checks."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, width)
        self.fc2 = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def stepped_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """An AdamW that has taken one step, so that its state holds tensors."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    return optimizer


def save(folder: Path, epoch: int, step: int, val_loss: float | None = 1.0, **kwargs) -> Path:
    """save_checkpoint with a fresh TinyNet, a time stamp that grows with the step, no retention."""
    kwargs.setdefault("retention", None)
    return save_checkpoint(
        folder,
        kwargs.pop("model", None) or TinyNet(),
        epoch=epoch,
        global_step=step,
        metrics={"train_loss": 2.0, "val_loss": val_loss, "learning_rate": 1e-3},
        when=BASE_TIME + dt.timedelta(seconds=step),
        **kwargs,
    )


def write_legacy(
    folder: Path, epoch: int, step: int, val_loss: float = 2.5, model: nn.Module | None = None
) -> Path:
    """A file as the notebook's earlier training cell wrote it (no format_version, no JSON record)."""
    model = model or TinyNet()
    when = BASE_TIME + dt.timedelta(seconds=step)
    path = Path(folder) / checkpoint_filename(epoch, step, when)
    path.parent.mkdir(parents=True, exist_ok=True)
    legacy = {
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": stepped_optimizer(model).state_dict(),
        "epoch": epoch,
        "global_step": step,
        "timestamp": when.strftime("%Y-%m-%d %H:%M:%S"),
        "metrics": {"train_loss": 3.0, "val_loss": val_loss, "learning_rate": 6e-4},
    }
    torch.save(legacy, path)
    return path


def tiny_gpt_after_one_step() -> tuple[nn.Module, torch.optim.Optimizer]:
    """A tiny GPT (lm_head tied to wte) and AdamW after one step: the state a save copies."""
    torch.manual_seed(0)
    model = GPT(config_for_preset("tiny"))
    optimizer = build_optimizer(model, 1e-3, 0.1)
    x = torch.randint(256, (2, 16))
    model(x, x)[1].backward()
    optimizer.step()
    return model, optimizer
