"""Sanity checks the notebook runs before training (Cells 15, 16, 27, 28).

Each check returns a :class:`CheckResult` with a verdict and a one-line
explanation, and leaves the model, its gradients and every global random
generator exactly as it found them: running or skipping a check never changes
the training run that follows.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

__all__ = [
    "CheckResult",
    "preserved_rng",
    "causality_check",
    "untrained_loss_check",
    "gradient_check",
    "overfit_one_batch",
]


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check; ``details`` holds the numbers behind it."""

    name: str
    passed: bool
    message: str
    details: dict = field(default_factory=dict)

    def line(self) -> str:
        return f"{'✅' if self.passed else '❌'} {self.name}: {self.message}"


def _devices_of(model: torch.nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


@contextmanager
def preserved_rng(model: torch.nn.Module):
    """Restore the CPU and CUDA generators on exit (dropout draws from them)."""
    with torch.random.fork_rng(devices=_devices_of(model)):
        yield


@contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def causality_check(model: torch.nn.Module, seq_len: int | None = None, seed: int = 0) -> CheckResult:
    """Changing the last token must not change the logits at earlier positions.

    A leak of future tokens into the past (a wrong attention mask) makes
    training loss look great and generation useless; this catches it.
    """
    config = model.config
    seq_len = min(seq_len or config.block_size, config.block_size)
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(config.vocab_size, (1, seq_len), generator=generator)
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % config.vocab_size
    with _eval_mode(model):
        device = _device_of(model)
        a, _ = model(idx.to(device))
        b, _ = model(changed.to(device))
    past_diff = (a[:, :-1] - b[:, :-1]).abs().max().item()
    last_diff = (a[:, -1] - b[:, -1]).abs().max().item()
    passed = past_diff < 1e-5 and last_diff > 0
    message = (
        f"earlier positions unchanged (max diff {past_diff:.1e}); the changed position moved ({last_diff:.2e})"
        if passed
        else f"future token leaks into the past: max diff {past_diff:.2e} at earlier positions"
    )
    return CheckResult("causality", passed, message, {"past_diff": past_diff, "last_diff": last_diff})


@torch.no_grad()
def untrained_loss_check(
    model: torch.nn.Module, batch, tolerance: float = 0.15, *, pretrained: bool = False
) -> CheckResult:
    """An untrained model's loss should be close to ln(vocab_size): it guesses uniformly.

    Args:
        batch: ``(x, y)`` token tensors.
        tolerance: accepted relative distance from ln(vocab_size).
        pretrained: the weights came from INIT_FROM: the loss is reported, not judged.
    """
    expected = math.log(model.config.vocab_size)
    with _eval_mode(model):
        device = _device_of(model)
        _, loss = model(batch[0].to(device), batch[1].to(device))
    loss = float(loss)
    distance = abs(loss - expected) / expected
    passed = distance <= tolerance or pretrained
    verdict = (
        "as expected for random weights"
        if distance <= tolerance
        else "far from it: check the init or the data"
    )
    if pretrained:
        verdict = "pretrained weights (INIT_FROM): random weights would be near ln(vocab_size)"
    message = (
        f"loss {loss:.4f} vs ln({model.config.vocab_size}) = {expected:.4f} ({distance:.1%} off, {verdict})"
    )
    return CheckResult("untrained loss", passed, message, {"loss": loss, "expected": expected})


def gradient_check(model: torch.nn.Module, batch) -> CheckResult:
    """One forward and backward pass: every trainable tensor gets a finite, non-zero gradient.

    The gradients are cleared afterwards and no step is taken, so the weights do not move.
    """
    device = _device_of(model)
    with preserved_rng(model):
        _, loss = model(batch[0].to(device), batch[1].to(device))
        loss.backward()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in named if p.grad is None or not p.grad.abs().sum().item() > 0]
    broken = [n for n, p in named if p.grad is not None and not torch.isfinite(p.grad).all()]
    norm = math.sqrt(sum(float(p.grad.float().norm()) ** 2 for _, p in named if p.grad is not None))
    model.zero_grad(set_to_none=True)
    passed = not missing and not broken and math.isfinite(norm)
    if passed:
        message = f"{len(named)} tensors all receive finite gradients; total grad norm {norm:.3f}"
    else:
        message = f"no gradient: {missing[:3]}; not finite: {broken[:3]}"
    return CheckResult(
        "gradients", passed, message, {"grad_norm": norm, "missing": missing, "broken": broken}
    )


def overfit_one_batch(
    model: torch.nn.Module, batch, *, steps: int = 30, learning_rate: float = 3e-3, target_ratio: float = 0.5
) -> CheckResult:
    """Train a copy of the model on one batch: the loss must drop below ``target_ratio`` of its start.

    A model that cannot memorise one batch has a bug (frozen weights, detached
    graph, wrong targets). The copy runs without dropout, so no random numbers
    are drawn; the real model and optimizer are untouched.
    """
    probe = copy.deepcopy(model).eval()  # eval: no dropout, a clean deterministic fit
    optimizer = torch.optim.AdamW(probe.parameters(), lr=learning_rate)
    device = _device_of(probe)
    x, y = batch[0].to(device), batch[1].to(device)
    losses = []
    for _ in range(steps):
        _, loss = probe(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    del probe, optimizer
    passed = losses[-1] < target_ratio * losses[0]
    message = f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in {steps} steps on one batch" + (
        "" if passed else f" (expected below {target_ratio:.0%} of the start)"
    )
    return CheckResult("overfit one batch", passed, message, {"losses": losses})
