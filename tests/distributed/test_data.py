"""RankBatches: each rank's own part of every epoch, deterministic, the notebook's batches for one process."""

from __future__ import annotations

import pytest
import torch

from utils.data import EpochBatches
from utils.training.distributed.data import RankBatches

TOKENS = torch.arange(4000)


def _windows(batches, epoch: int) -> list[int]:
    """The first token of every sequence a rank reads in one epoch (distinct windows: distinct tokens)."""
    return [
        int(start) for i in range(batches.batches_per_epoch) for start in batches.batch(epoch, i)[0][:, 0]
    ]


class TestRankBatches:
    def test_one_process_reads_the_notebooks_batches(self):
        ours, notebook = RankBatches(TOKENS, 4, 16, seed=3), EpochBatches(TOKENS, 4, 16, seed=3)
        assert ours.batches_per_epoch == notebook.batches_per_epoch
        assert all(
            torch.equal(ours.batch(1, i)[0], notebook.batch(1, i)[0]) for i in range(ours.batches_per_epoch)
        )

    def test_ranks_read_disjoint_parts_of_the_same_size(self):
        ranks = [RankBatches(TOKENS, 4, 16, seed=3, rank=r, world_size=2) for r in (0, 1)]
        assert ranks[0].batches_per_epoch == ranks[1].batches_per_epoch == (4000 // 16 - 1) // 2 // 4
        first, second = (_windows(r, epoch=0) for r in ranks)
        assert not set(first) & set(second)

    def test_the_same_batches_every_time_another_order_each_epoch(self):
        a, b = (RankBatches(TOKENS, 4, 16, seed=3, rank=1, world_size=2) for _ in range(2))
        assert torch.equal(a.batch(2, 1)[0], b.batch(2, 1)[0])
        assert _windows(a, 0) != _windows(a, 1)

    def test_rank_outside_the_world(self):
        with pytest.raises(ValueError, match="rank must be in range"):
            RankBatches(TOKENS, 4, 16, seed=3, rank=2, world_size=2)

    def test_too_few_windows_for_every_rank(self):
        with pytest.raises(ValueError, match="give each of 64 processes fewer than batch_size=4"):
            RankBatches(TOKENS, 4, 16, seed=3, rank=0, world_size=64)

    def test_index_outside_the_epoch(self):
        with pytest.raises(IndexError, match="outside"):
            RankBatches(TOKENS, 4, 16, seed=3, max_batches_per_epoch=2).batch(0, 2)
