"""``||b - a||`` and ``||a||`` of weight tensors, piece by piece, accumulated in float64.

One function for the training loop's per-epoch record and for ``layer_changes`` between
files, so both give the same number for the same two weight tensors. The tensors are
walked in pieces: the only temporaries are one piece's difference and its float64 copy,
whatever the tensor's size, and a memory-mapped tensor is read page by page. With several
``ends``, each piece of ``start`` is compared with all of them while it is in the CPU's cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["PIECE", "distances_and_norm"]

# Elements per piece: 1 MiB of float32, small enough to stay in the CPU's cache while it is compared
# with every file, large enough that Python's per-piece overhead is small next to the arithmetic.
PIECE = 1 << 18


def distances_and_norm(
    start: torch.Tensor,
    ends: Sequence[torch.Tensor],
    *,
    device: torch.device | None = None,
    piece: int = PIECE,
    after_piece: Callable[[int, int], None] | None = None,
) -> tuple[list[float], float]:
    """``([||end - start|| for end in ends], ||start||)``, each sum of squares in float64.

    Args:
        start: the reference tensor (any floating dtype, any device).
        ends: tensors of ``start``'s shape; each piece is converted to ``start``'s dtype.
        device: where the arithmetic runs, one piece at a time (default: ``start``'s device), e.g.
            the GPU for a CPU copy compared with a GPU parameter.
        piece: elements per piece.
        after_piece: called with ``(start, stop)`` (flat element indices) once a piece of every
            tensor has been used, e.g. to unmap those pages of memory-mapped files.

    Raises:
        ValueError: a shape differs from ``start``'s.
    """
    for end in ends:
        if end.shape != start.shape:
            raise ValueError(f"shapes differ: {tuple(start.shape)} and {tuple(end.shape)}")
    device = start.device if device is None else torch.device(device)
    a = start.reshape(-1)
    flats = [end.reshape(-1) for end in ends]
    squares = torch.zeros(len(ends) + 1, dtype=torch.float64, device=device)  # distances..., norm
    for i in range(0, a.numel(), piece):
        pa = a[i : i + piece].to(device)
        for j, b in enumerate(flats):
            diff = (b[i : i + piece].to(device=device, dtype=pa.dtype) - pa).double()
            squares[j] += torch.dot(diff, diff)
        pa64 = pa.double()
        squares[-1] += torch.dot(pa64, pa64)
        if after_piece is not None:
            after_piece(i, i + piece)
    values = [math.sqrt(v) for v in squares.tolist()]  # one device sync per tensor, not per piece
    return values[:-1], values[-1]
