"""ShardedSource: this notebook's FSDP checkpoint folder, read in one process without a process group."""

from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import TinyNet, stepped_optimizer
from tests.engine.sharded_helpers import write_sharded
from utils.training.engine import format as fmt
from utils.training.engine.errors import CorruptCheckpointError
from utils.training.engine.sharded_folder import RECORD_NAME, rank_file_name
from utils.training.engine.sources.sharded import (
    ShardedSource,
    folder_probe,
    indexed_optimizer_state,
    read_sharded_record,
    read_sharded_training_state,
)


@pytest.fixture
def trained():
    torch.manual_seed(0)
    model = TinyNet()
    return model, stepped_optimizer(model)


class TestShardedSourceClaims:
    def test_our_folder_not_a_plain_dcp_one(self, tmp_path):
        folder = write_sharded(tmp_path)
        assert ShardedSource().claims(folder_probe(folder))
        (folder / RECORD_NAME).unlink()  # named like ours: still ours, an unfinished save
        assert ShardedSource().claims(folder_probe(folder))
        assert not ShardedSource().claims(folder_probe(folder.rename(tmp_path / "exported")))


class TestShardedSourceReadRecord:
    def test_the_record_never_the_shards(self, tmp_path):
        folder = write_sharded(tmp_path, epoch=1, step=6, val_loss=0.25)
        for shard in folder.glob("*.distcp"):  # their sizes are confirmed, their bytes never read
            shard.write_bytes(b"\0" * shard.stat().st_size)
        record = ShardedSource().read_record(folder_probe(folder))
        assert (record.kind, record.epoch, record.global_step, record.val_loss) == ("sharded", 1, 6, 0.25)
        assert record.history[0]["val_loss"] == 0.25 and record.config["training"] == {"seed": 1}
        assert record.has_optimizer and record.data_state["world_size"] == 1


class TestShardedSourceOpenWeights:
    def test_the_full_weights(self, tmp_path, trained):
        model, optimizer = trained
        with ShardedSource().open_weights(
            folder_probe(write_sharded(tmp_path, model=model, optimizer=optimizer))
        ) as w:
            assert all(torch.equal(w.tensor(n), t) for n, t in model.state_dict().items())


class TestShardedSourceOpenTrainingState:
    def test_everything_but_the_weights_in_the_single_file_format(self, tmp_path, trained):
        model, optimizer = trained
        state = ShardedSource().open_training_state(
            folder_probe(write_sharded(tmp_path, step=7, model=model, optimizer=optimizer))
        )
        assert state["global_step"] == 7 and fmt.MODEL_STATE_KEY not in state  # open_weights reads those
        restored = torch.optim.AdamW(TinyNet().parameters(), lr=1e-3)
        restored.load_state_dict(state[fmt.OPTIMIZER_STATE_KEY])
        assert torch.equal(
            restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
        )
        assert torch.equal(state[fmt.STEP_LOSSES_KEY], torch.arange(7, dtype=torch.float64))
        assert state[fmt.RNG_STATE_KEY]["torch"].dtype == torch.uint8 and len(state["rank_states"]) == 1

    def test_a_missing_rank_file_is_named(self, tmp_path):
        folder = write_sharded(tmp_path)
        (folder / rank_file_name(0)).unlink()
        with pytest.raises(CorruptCheckpointError, match="rank_00000.pt is missing"):
            read_sharded_training_state(folder)

    def test_an_unfinished_save_is_refused_before_any_shard_is_read(self, tmp_path):
        folder = write_sharded(tmp_path)
        (folder / RECORD_NAME).unlink()
        (folder / "__0_0.distcp").unlink()
        with pytest.raises(CorruptCheckpointError, match="did not finish"):
            read_sharded_training_state(folder)


class TestIndexedOptimizerState:
    def test_names_become_numbers_in_group_order(self):
        named = {"state": {"b": {"step": 1}, "a": {"step": 2}},
                 "param_groups": [{"lr": 0.1, "params": ["a"]}, {"lr": 0.2, "params": ["b"]}]}  # fmt: skip
        indexed = indexed_optimizer_state(named)
        assert indexed["state"] == {1: {"step": 1}, 0: {"step": 2}}
        assert [g["params"] for g in indexed["param_groups"]] == [[0], [1]]

    def test_not_the_named_form(self):
        with pytest.raises(CorruptCheckpointError, match="no parameter groups"):
            indexed_optimizer_state({"state": {}})


class TestReadShardedTrainingState:
    def test_reads_a_folder_path(self, tmp_path):
        assert read_sharded_training_state(write_sharded(tmp_path, step=5))["global_step"] == 5


class TestReadShardedRecord:
    def test_the_record_of_a_folder_path(self, tmp_path):
        record = read_sharded_record(write_sharded(tmp_path, step=5))
        assert (record.kind, record.global_step, record.size_bytes > 0) == ("sharded", 5, True)
        assert record.notes == ("written by 1 process(es) with FSDP",)
