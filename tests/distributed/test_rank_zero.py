"""save_on_rank_zero without a process group: rank 0's save_checkpoint, every rank's generators kept."""

from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import TinyNet
from utils.training.distributed.context import DistributedContext
from utils.training.distributed.rank_zero import RANKS_KEY, save_on_rank_zero
from utils.training.engine.errors import CheckpointSaveError
from utils.training.rng import capture_rng_state

DDP_ONE = DistributedContext(strategy="ddp")


class TestSaveOnRankZero:
    def test_the_file_carries_every_ranks_generators(self, tmp_path):
        state = capture_rng_state()
        path = save_on_rank_zero(
            DDP_ONE, tmp_path, TinyNet(), epoch=0, global_step=2, metrics=None, rng_state=state
        )
        saved = torch.load(path, weights_only=True)["rng_state"]
        assert torch.equal(saved["torch"], state["torch"]) and len(saved[RANKS_KEY]) == 1

    def test_a_failure_is_raised(self, tmp_path):
        (tmp_path / "file").write_text("x")
        with pytest.raises(CheckpointSaveError, match="could not save"):
            save_on_rank_zero(DDP_ONE, tmp_path / "file", TinyNet(), epoch=0, global_step=2, metrics=None)
