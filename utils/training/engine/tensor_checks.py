"""Bit-level checks on tensors: tied-tensor identity, exact equality, NaN/Inf.

Used after a load to prove that the model holds exactly the file's weights.
Comparisons use integer views of the same bytes, so a NaN equals the same NaN
and -0.0 differs from 0.0: "equal" means "the same bits".
"""

from __future__ import annotations

import torch

__all__ = ["storage_key", "equal_bits", "has_nonfinite"]

CHUNK = 1 << 22  # elements per piece when comparing with a conversion or across devices
_BIT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.int64}


def storage_key(tensor: torch.Tensor) -> tuple:
    """Identifies tied tensors (same memory, same view); empty tensors are never tied."""
    if tensor.numel() == 0:
        return ("empty", id(tensor))
    return (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)


def equal_bits(model_tensor: torch.Tensor, source: torch.Tensor) -> bool:
    """Bit-for-bit equality of ``source`` (converted to the model's dtype) with the model's tensor.

    Compares integer views, so NaN equals NaN. Same dtype and device: one pass,
    no allocation. Otherwise piecewise, so a conversion never allocates a
    full-size temporary.
    """
    if (
        model_tensor.shape == source.shape
        and model_tensor.dtype == source.dtype
        and model_tensor.device == source.device
        and model_tensor.element_size() <= 8
    ):  # compared as they lie: flattening a strided view (a transposed Conv1D weight) would copy it
        return torch.equal(_bits(model_tensor), _bits(source))
    a, b = model_tensor.reshape(-1), source.reshape(-1)
    if a.numel() != b.numel():
        return False
    if a.dtype == b.dtype and a.device == b.device:
        return torch.equal(_bits(a), _bits(b))
    for i in range(0, a.numel(), CHUNK):
        piece = a[i : i + CHUNK]
        if not torch.equal(_bits(piece), _bits(b[i : i + CHUNK].to(piece.device, piece.dtype))):
            return False
    return True


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The same bytes as integers (any strides: the element size does not change, up to 8 bytes)."""
    return tensor.view(_BIT_VIEW[tensor.element_size()]) if tensor.numel() else tensor


def has_nonfinite(tensor: torch.Tensor) -> bool:
    """NaN or Inf anywhere; a sum is the fast test, an exact piecewise pass confirms."""
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return False
    if bool(torch.isfinite(tensor.sum()).all()):  # any NaN/Inf makes the sum non-finite
        return False
    flat = tensor.reshape(-1)  # a non-finite sum may be an overflow of finite values
    return any(not bool(torch.isfinite(flat[i : i + CHUNK]).all()) for i in range(0, flat.numel(), CHUNK))
