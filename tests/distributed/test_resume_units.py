"""The torchrun resume's parts that need no process group: choosing the source, restoring, reporting."""

from __future__ import annotations

import torch

from tests.engine.helpers import TinyNet, save, stepped_optimizer
from tests.engine.sharded_helpers import write_sharded
from utils.training.distributed.context import DistributedContext
from utils.training.distributed.data import RankBatches
from utils.training.distributed.resume import named_optimizer_state, restore_for_ranks
from utils.training.engine.sources.sharded import indexed_optimizer_state

BATCHES = RankBatches(torch.arange(4000), 4, 16, seed=1, rank=0, world_size=2)


class TestRestoreForRanks:
    def test_one_process_from_a_folder(self, tmp_path):
        torch.manual_seed(0)
        model = TinyNet()
        folder = write_sharded(tmp_path, model=model, optimizer=stepped_optimizer(model))
        fresh = TinyNet()
        state = restore_for_ranks(DistributedContext(strategy="ddp"), folder, fresh, stepped_optimizer(fresh),
                                  None, None, RankBatches(torch.arange(4000), 4, 16, seed=1))  # fmt: skip
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
        assert state.global_step == 3

    def test_another_number_of_processes_is_reported_and_the_position_carried(self, tmp_path):
        path = save(tmp_path, epoch=0, step=2, rng_state=None,
                    data_state={"epoch": 0, "batch_in_epoch": 2, "batches_per_epoch": 30, "seed": 1})  # fmt: skip
        two = DistributedContext(rank=0, world_size=2, strategy="ddp")  # no group: only the numbers matter
        state = restore_for_ranks(two, path, TinyNet(), None, None, None, BATCHES)
        assert state.batch_in_epoch == 1  # 2 batches of 1 process = 1 batch of each of 2
        report = state.render()
        assert "written by 1 process(es), resumed with 2" in report and "rank 0's" in report


class TestNamedOptimizerState:
    def test_round_trip_with_the_indexed_form(self):
        model = TinyNet()
        optimizer = stepped_optimizer(model)
        named = named_optimizer_state(optimizer.state_dict(), optimizer, model)
        assert named["param_groups"][0]["params"] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
        back = indexed_optimizer_state(named)
        assert all(torch.equal(back["state"][i]["exp_avg"], optimizer.state_dict()["state"][i]["exp_avg"])
                   for i in range(4))  # fmt: skip
