"""Which device a model goes to: one rule for the loader, training and the notebook."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA when available, else the CPU; otherwise the named device.

    Raises:
        ValueError: a CUDA device is asked for but none is available.
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(name)!r} was asked for, but no CUDA GPU is available (torch.cuda.is_available() "
            "is False).\nFix: use 'auto' or 'cpu', or run on a machine with a GPU (in Colab: Runtime > "
            "Change runtime type > GPU)."
        )
    return device
