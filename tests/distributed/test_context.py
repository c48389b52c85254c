"""DistributedContext without a process group: exactly the one-process behaviour."""

from __future__ import annotations

import torch

from tests.engine.helpers import TinyNet
from utils.training.distributed.context import SINGLE_PROCESS, DistributedContext


class TestDistributedContext:
    def test_one_process_averages_nothing(self):
        assert SINGLE_PROCESS.average(0.1 + 0.2) == 0.1 + 0.2  # the very same float, no arithmetic

    def test_one_process_data_position_is_unchanged(self):
        position = {"epoch": 1, "batch_in_epoch": 2, "batches_per_epoch": 3, "seed": 4}
        assert SINGLE_PROCESS.describe_data(position) == position

    def test_with_a_group_the_position_names_its_world_size(self):
        context = DistributedContext(rank=1, world_size=2, strategy="ddp", has_group=True)
        assert context.describe_data({"epoch": 0})["world_size"] == 2
        assert not context.is_main and not context.should_print

    def test_without_a_group_collectives_are_the_identity(self):
        assert SINGLE_PROCESS.gather("x") == ["x"] and SINGLE_PROCESS.broadcast("y") == "y"

    def test_one_process_saves_through_save_checkpoint(self, tmp_path):
        path = SINGLE_PROCESS.save_checkpoint(tmp_path, TinyNet(), epoch=0, global_step=1, metrics=None)
        assert path.is_file() and torch.load(path, weights_only=True)["global_step"] == 1
