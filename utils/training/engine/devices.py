"""Which device a model goes to: one rule for the loader, training and the notebook."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]

_FIX = (
    "Fix: use 'auto' (a GPU when there is one, else the CPU), 'cpu', or 'cuda:N' for one of this "
    "machine's GPUs."
)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA when available, else the CPU; otherwise the named device, checked.

    Raises:
        ValueError: the name is not a device, names a device that holds no data (``meta``), a kind
            of accelerator this machine or this torch build lacks, or a GPU index beyond its count.
            Checked before anything is read or moved.
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ValueError(f"device {str(name)!r} is not a device name ({error}).\n{_FIX}") from None
    if device.type == "cpu":
        return device
    if device.type == "meta":
        raise ValueError(f"device {str(name)!r} holds no data: weights loaded there would be lost.\n{_FIX}")
    if device.type == "cuda":
        return _checked_cuda(device, name)
    if not _backend_available(device.type):
        raise ValueError(
            f"device {str(name)!r} was asked for, but this machine (or this torch build) has no "
            f"{device.type} device.\n{_FIX}"
        )
    return device


def _checked_cuda(device: torch.device, name: object) -> torch.device:
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {str(name)!r} was asked for, but no CUDA GPU is available (torch.cuda.is_available() "
            "is False).\nFix: use 'auto' or 'cpu', or run on a machine with a GPU (in Colab: Runtime > "
            "Change runtime type > GPU)."
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"device {str(name)!r} was asked for, but this machine has {count} GPU(s).\n{_FIX}")
    return device


def _backend_available(kind: str) -> bool:
    """Whether torch can use an accelerator of this kind here (mps, xpu, ...); never raises."""
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
    else:
        backend = getattr(torch, kind, None)
    is_available = getattr(backend, "is_available", None)
    try:
        return bool(is_available()) if callable(is_available) else False
    except Exception:  # noqa: BLE001 -- a half-built backend is an unavailable one
        return False
