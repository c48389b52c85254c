"""Device and mixed-precision choices, resolved once from the notebook's settings."""

from __future__ import annotations

import torch

from utils.training.engine.devices import resolve_device

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision", "build_grad_scaler"]

PRECISIONS = ("auto", "off", "bf16", "fp16")


def resolve_precision(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mixed_precision`` on ``device``; None means full float32.

    ``"auto"`` picks bf16 on GPUs that support it, fp16 on older GPUs, and float32 on the CPU.

    Raises:
        ValueError: an unknown setting, or a precision the device cannot run.
    """
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {mixed_precision!r}")
    cuda = device.type == "cuda"
    if mixed_precision == "off" or (mixed_precision == "auto" and not cuda):
        return None
    if mixed_precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mixed_precision == "fp16" and not cuda:
        raise ValueError("mixed_precision='fp16' needs a CUDA GPU; use 'bf16' or 'off' on the CPU")
    if mixed_precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError("This GPU does not support bf16; use mixed_precision='fp16' or 'auto'")
    return torch.bfloat16 if mixed_precision == "bf16" else torch.float16


def build_grad_scaler(mixed_precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler when the run uses float16 (which needs loss scaling), else None."""
    if resolve_precision(mixed_precision, device) is torch.float16:
        return torch.amp.GradScaler(device.type)
    return None
