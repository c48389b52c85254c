"""save_sharded_checkpoint in one process (no process group): the folder, its commit, its failures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.engine.helpers import TinyNet, stepped_optimizer
from tests.engine.sharded_helpers import ONE_PROCESS_FSDP, write_sharded
from utils.training.distributed.sharded_save import save_sharded_checkpoint
from utils.training.engine.checkpoint import RetentionPolicy
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.sharded_folder import (
    RECORD_NAME,
    TRAIN_STATE_NAME,
    checkpoint_folders,
    rank_file_name,
)


class TestSaveShardedCheckpoint:
    def test_a_committed_folder_with_every_part(self, tmp_path):
        folder = write_sharded(tmp_path, epoch=1, step=6)
        assert folder.name.startswith("checkpoint_epoch0001_step000006_") and checkpoint_folders(
            tmp_path
        ) == [folder]
        names = {path.name for path in folder.iterdir()}
        assert {RECORD_NAME, TRAIN_STATE_NAME, rank_file_name(0), ".metadata", "__0_0.distcp"} == names
        record = json.loads((folder / RECORD_NAME).read_text())
        assert (record["layout"], record["world_size"], record["global_step"]) == ("sharded", 1, 6)
        own = torch.load(folder / rank_file_name(0), weights_only=True)
        assert set(own) == {"rng_state", "data_state"} and own["data_state"]["world_size"] == 1

    def test_a_failed_save_raises_and_leaves_no_folder(self, tmp_path):
        blocker = tmp_path / "not_a_folder"
        blocker.write_text("x")
        model = TinyNet()
        with pytest.raises(
            CheckpointSaveError, match="could not save checkpoint_epoch0000_step000001_.*rank 0"
        ):
            save_sharded_checkpoint(ONE_PROCESS_FSDP, blocker, model, stepped_optimizer(model),
                                    epoch=0, global_step=1, metrics=None)  # fmt: skip
        assert blocker.read_text() == "x"

    def test_the_leftover_of_a_killed_save_is_removed_by_the_next(self, tmp_path):
        dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True).stdout)  # fmt: skip
        leftover = tmp_path / f".checkpoint_epoch0000_step000001_20250101_000000.tmp-{dead}-00ff"
        leftover.mkdir()
        (leftover / "__0_0.distcp").write_bytes(b"half")
        write_sharded(tmp_path, step=2)
        assert not leftover.exists()

    def test_retention_keeps_the_newest_and_the_best(self, tmp_path):
        for step, loss in [(1, 0.5), (2, 3.0), (3, 2.0)]:
            write_sharded(tmp_path, epoch=step, step=step, val_loss=loss,
                          retention=RetentionPolicy(keep_best=1, keep_last=1))  # fmt: skip
        assert sorted(int(f.name.split("_step")[1][:6]) for f in checkpoint_folders(tmp_path)) == [1, 3]
