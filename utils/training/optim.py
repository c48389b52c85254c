"""AdamW with nanoGPT's weight-decay groups, and a warmup + cosine learning-rate schedule.

The schedule is a small callable class, not a lambda: ``LambdaLR.state_dict()``
then stores its settings as a plain dict, which ``torch.load(weights_only=True)``
reads back (a lambda would be dropped silently, an arbitrary object refused).
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["build_optimizer", "build_scheduler", "WarmupCosine"]


def build_optimizer(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, in two groups (nanoGPT's rule).

    Tensors with 2 or more dimensions (matmul weights and embeddings) decay;
    biases and LayerNorm weights (1-D) do not.

    Returns:
        The optimizer; group 0 decays, group 1 does not.

    Raises:
        ValueError: learning_rate <= 0, weight_decay < 0, or no trainable parameters.
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    params = [p for p in model.parameters() if p.requires_grad]  # shared tensors listed once
    if not params:
        raise ValueError("The model has no trainable parameters (all have requires_grad=False)")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)


class WarmupCosine:
    """LR multiplier: linear warmup over ``warmup_steps``, then cosine down to ``min_lr_ratio``.

    Step ``s`` (0-based, the number of ``scheduler.step()`` calls so far) gets
    ``(s + 1) / (warmup_steps + 1)`` during warmup (never 0), then
    ``min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + cos(pi * progress))``; after
    ``total_steps`` it stays at ``min_lr_ratio``.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1
) -> LambdaLR:
    """A ``LambdaLR`` driven by :class:`WarmupCosine`; call ``scheduler.step()`` once per optimizer step.

    Raises:
        ValueError: total_steps < 1, warmup_steps < 0, or min_lr_ratio outside [0, 1].
    """
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_lr_ratio))
