"""Training and validation batches whose order depends only on (seed, epoch, index).

``EpochBatches.batch(epoch, index)`` needs no random state: each epoch's window
order comes from a private ``torch.Generator`` seeded from ``(seed, epoch)``. A run
resumed at (epoch, index) therefore sees exactly the batches the uninterrupted run
would have seen, and drawing batches never touches the global RNG (which dropout
uses and which a checkpoint restores).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["split_tokens", "EpochBatches", "validation_batches", "Batch"]

Batch = tuple[torch.Tensor, torch.Tensor]
# An odd 64-bit constant (golden ratio): spreads (seed, epoch) over distinct generator seeds.
_MIX = 0x9E3779B97F4A7C15


def _as_tokens(tokens: Sequence[int] | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(tokens, dtype=torch.int64)
    if tensor.dim() != 1:
        raise ValueError(f"tokens must be one-dimensional, got shape {tuple(tensor.shape)}")
    return tensor


def split_tokens(
    tokens: Sequence[int] | torch.Tensor, val_fraction: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a token sequence: the first part trains, the last ``val_fraction`` validates.

    Returns:
        ``(train, val)``, 1-D int64 tensors.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1), or too few tokens for two parts.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    data = _as_tokens(tokens)
    n_val = int(round(len(data) * val_fraction))
    if n_val < 1 or n_val >= len(data):
        raise ValueError(f"{len(data)} tokens are too few to split with val_fraction={val_fraction}")
    return data[: len(data) - n_val].clone(), data[len(data) - n_val :].clone()


class EpochBatches:
    """Shuffled, non-overlapping windows of ``block_size`` tokens, ``batch_size`` per batch.

    Each epoch picks a random offset and a random order of windows from a generator
    seeded by ``(seed, epoch)``; the last incomplete batch is dropped.

    Args:
        tokens: 1-D token ids (the training split).
        batch_size: sequences per batch.
        block_size: tokens per sequence (the model's context length or less).
        seed: the data seed; same seed, same batches.
        max_batches_per_epoch: cap on batches per epoch (None: all windows).

    Raises:
        ValueError: bad sizes, or too few tokens for one batch.
    """

    def __init__(
        self,
        tokens: Sequence[int] | torch.Tensor,
        batch_size: int,
        block_size: int,
        seed: int,
        max_batches_per_epoch: int | None = None,
    ) -> None:
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size=} {block_size=}")
        if max_batches_per_epoch is not None and max_batches_per_epoch < 1:
            raise ValueError(f"max_batches_per_epoch must be >= 1 or None, got {max_batches_per_epoch}")
        self.tokens = _as_tokens(tokens)
        self.batch_size, self.block_size, self.seed = batch_size, block_size, int(seed)
        # One window slot is kept free so that any offset in [0, block_size) fits.
        self.windows = len(self.tokens) // block_size - 1
        full = self.windows // batch_size
        if full < 1:
            raise ValueError(
                f"{len(self.tokens):,} training tokens give {max(self.windows, 0)} windows of "
                f"block_size={block_size}, fewer than batch_size={batch_size}.\n"
                "Fix: use a longer text, a smaller BATCH_SIZE, or a smaller block_size."
            )
        self.batches_per_epoch = min(full, max_batches_per_epoch) if max_batches_per_epoch else full
        self._cached: tuple[int, int, torch.Tensor] | None = None  # (epoch, offset, order)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _epoch_plan(self, epoch: int) -> tuple[int, torch.Tensor]:
        if self._cached is None or self._cached[0] != epoch:
            generator = torch.Generator().manual_seed((self.seed * _MIX + epoch) % 2**63)
            offset = int(torch.randint(self.block_size, (1,), generator=generator))
            order = torch.randperm(self.windows, generator=generator)
            self._cached = (epoch, offset, order)
        return self._cached[1], self._cached[2]

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch ``index`` of ``epoch``: ``(x, y)``, each (batch_size, block_size) int64, y = x shifted by one.

        Raises:
            IndexError: ``index`` outside ``range(batches_per_epoch)`` or a negative epoch.
        """
        if not 0 <= index < self.batches_per_epoch or epoch < 0:
            raise IndexError(f"batch ({epoch=}, {index=}) outside 0..{self.batches_per_epoch - 1}")
        offset, order = self._epoch_plan(epoch)
        windows = order[index * self.batch_size : (index + 1) * self.batch_size]
        starts = offset + windows * self.block_size
        positions = starts[:, None] + torch.arange(self.block_size)  # (B, T)
        return self.tokens[positions], self.tokens[positions + 1]


def validation_batches(
    val_tokens: Sequence[int] | torch.Tensor, batch_size: int, block_size: int, max_batches: int | None = None
) -> list[Batch]:
    """Consecutive windows of the validation split, in order: the same list every time.

    The last batch may be smaller than ``batch_size``.

    Raises:
        ValueError: bad sizes, or fewer than ``block_size + 1`` validation tokens.
    """
    if batch_size < 1 or block_size < 1:
        raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size=} {block_size=}")
    data = _as_tokens(val_tokens)
    windows = (len(data) - 1) // block_size
    if windows < 1:
        raise ValueError(
            f"{len(data)} validation tokens are fewer than block_size + 1 = {block_size + 1}.\n"
            "Fix: use a longer text or a larger validation fraction."
        )
    starts = torch.arange(windows) * block_size
    batches = []
    for chunk in starts.split(batch_size):
        positions = chunk[:, None] + torch.arange(block_size)
        batches.append((data[positions], data[positions + 1]))
        if max_batches is not None and len(batches) >= max_batches:
            break
    return batches
