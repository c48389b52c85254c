"""Each rank's part of every epoch: the same idea as ``DistributedSampler``, inside the batch builder.

Every rank draws the epoch's window order from the same generator (seeded by the data
seed and the epoch, as ``EpochBatches`` does) and keeps every ``world_size``-th window
starting at its rank; each rank's batches are ``batch_size`` of its own windows. So the
ranks together read each window of an epoch at most once, each batch depends only on
(seed, epoch, rank, index), and with one process the batches are exactly the notebook's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from utils.data.batches import Batch, EpochBatches

__all__ = ["RankBatches"]


class RankBatches(EpochBatches):
    """``EpochBatches`` for one rank of ``world_size``: its own windows of every epoch.

    Args:
        tokens, batch_size, block_size, seed, max_batches_per_epoch: as for ``EpochBatches``
            (``batch_size`` and the cap are per rank).
        rank: this process's rank (0-based).
        world_size: the number of processes.

    Raises:
        ValueError: a rank outside ``range(world_size)``, or too few windows for one batch per rank.
    """

    def __init__(
        self,
        tokens: Sequence[int] | torch.Tensor,
        batch_size: int,
        block_size: int,
        seed: int,
        max_batches_per_epoch: int | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in range(world_size), got {rank=} {world_size=}")
        super().__init__(tokens, batch_size, block_size, seed, max_batches_per_epoch)
        self.rank, self.world_size = rank, world_size
        full = (self.windows // world_size) // batch_size  # the same count on every rank
        if full < 1:
            raise ValueError(
                f"{self.windows} windows of block_size={block_size} give each of {world_size} processes "
                f"fewer than batch_size={batch_size}.\nFix: use a longer text, fewer processes, or a "
                "smaller batch size."
            )
        self.batches_per_epoch = min(full, max_batches_per_epoch) if max_batches_per_epoch else full

    def batch(self, epoch: int, index: int) -> Batch:
        """This rank's batch ``index`` of ``epoch`` (see ``EpochBatches.batch``).

        Raises:
            IndexError: ``index`` outside ``range(batches_per_epoch)`` or a negative epoch.
        """
        if not 0 <= index < self.batches_per_epoch or epoch < 0:
            raise IndexError(f"batch ({epoch=}, {index=}) outside 0..{self.batches_per_epoch - 1}")
        offset, order = self._epoch_plan(epoch)
        mine = order[self.rank :: self.world_size]
        windows = mine[index * self.batch_size : (index + 1) * self.batch_size]
        starts = offset + windows * self.block_size
        positions = starts[:, None] + torch.arange(self.block_size)
        return self.tokens[positions], self.tokens[positions + 1]
