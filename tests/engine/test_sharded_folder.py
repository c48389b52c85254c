"""The sharded checkpoint folder: listing by name, its record, its small parts, removing it safely."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from tests.engine.sharded_helpers import write_sharded
from utils.training.engine.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.naming import is_temporary_file
from utils.training.engine.sharded_folder import (
    RECORD_NAME,
    TRAIN_STATE_NAME,
    checkpoint_folders,
    folder_size,
    rank_file_name,
    read_folder_record,
    read_part,
    remove_checkpoint_folder,
    world_size_of,
)


class TestRankFileName:
    def test_five_digits(self):
        assert rank_file_name(3) == "rank_00003.pt"


class TestCheckpointFolders:
    def test_only_folders_named_like_checkpoints(self, tmp_path):
        good = write_sharded(tmp_path)
        (tmp_path / "notes").mkdir()
        (tmp_path / (good.name + ".pt")).write_bytes(b"")  # a file with a checkpoint name
        (tmp_path / f".{good.name}.tmp-1-ab").mkdir()  # a save in progress
        assert checkpoint_folders(tmp_path) == [good]

    def test_missing_folder_lists_nothing(self, tmp_path):
        assert checkpoint_folders(tmp_path / "absent") == []


class TestReadFolderRecord:
    def test_reads_the_record_only(self, tmp_path):
        folder = write_sharded(tmp_path, epoch=2, step=9, val_loss=0.5)
        for shard in folder.glob("*.distcp"):
            shard.unlink()  # the listing never needs the shards
        raw = read_folder_record(folder)
        assert (raw["layout"], raw["epoch"], raw["global_step"], raw["world_size"]) == ("sharded", 2, 9, 1)
        assert raw["metrics"]["val_loss"] == 0.5 and raw["has_optimizer"] and raw["has_rng_state"]

    def test_unfinished_save_has_no_record(self, tmp_path):
        folder = write_sharded(tmp_path)
        (folder / RECORD_NAME).unlink()
        with pytest.raises(CorruptCheckpointError, match="did not finish"):
            read_folder_record(folder)

    def test_damaged_record(self, tmp_path):
        folder = write_sharded(tmp_path)
        (folder / RECORD_NAME).write_text(json.dumps(["not", "a", "record"]))
        with pytest.raises(CorruptCheckpointError, match="not a checkpoint record"):
            read_folder_record(folder)

    def test_not_a_folder(self, tmp_path):
        with pytest.raises(CheckpointNotFoundError, match="is not a folder"):
            read_folder_record(tmp_path / "absent")


class TestWorldSizeOf:
    def test_a_positive_count_or_none(self):
        assert world_size_of({"world_size": 4}) == 4
        assert [world_size_of({"world_size": v}) for v in (0, -1, True, "2", 2.0)] == [None] * 5
        assert world_size_of({}) is None


class TestFolderSize:
    def test_the_files_directly_inside(self, tmp_path):
        (tmp_path / "a").write_bytes(b"12345")
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "b").write_bytes(b"123")
        assert folder_size(tmp_path) == 5 and folder_size(tmp_path / "absent") == 0


class TestReadPart:
    def test_reads_a_dict_with_weights_only(self, tmp_path):
        part = read_part(write_sharded(tmp_path, step=7), TRAIN_STATE_NAME)
        assert part["global_step"] == 7 and "model_state_dict" not in part

    def test_missing_part(self, tmp_path):
        with pytest.raises(CorruptCheckpointError, match="rank_00001.pt is missing"):
            read_part(write_sharded(tmp_path), rank_file_name(1))

    def test_fifo_is_refused_without_blocking(self, tmp_path):
        folder = write_sharded(tmp_path)
        (folder / TRAIN_STATE_NAME).unlink()
        os.mkfifo(folder / TRAIN_STATE_NAME)
        with pytest.raises(CorruptCheckpointError, match="named pipe"):
            read_part(folder, TRAIN_STATE_NAME)

    def test_pickle_that_would_run_code_is_refused(self, tmp_path):
        folder = write_sharded(tmp_path)
        marker = tmp_path / "ran"
        payload = pickle.dumps(_Exploit(str(marker)), protocol=2)

        torch.save({"x": 1}, folder / TRAIN_STATE_NAME)  # a zip; replace its pickle with the payload
        _replace_pickle(folder / TRAIN_STATE_NAME, payload)
        with pytest.raises(UnsafeCheckpointError, match="arbitrary unpickling"):
            read_part(folder, TRAIN_STATE_NAME)
        assert not marker.exists()


class TestRemoveCheckpointFolder:
    def test_removed_and_nothing_left(self, tmp_path):
        folder = write_sharded(tmp_path)
        remove_checkpoint_folder(folder)
        assert list(tmp_path.iterdir()) == []

    def test_renamed_away_first(self, tmp_path, monkeypatch):
        folder = write_sharded(tmp_path)
        seen = []
        monkeypatch.setattr("shutil.rmtree", lambda path: seen.append(os.path.basename(path)))
        remove_checkpoint_folder(folder)  # the deletion "dies" here: only the rename happened
        assert is_temporary_file(seen[0]) and checkpoint_folders(tmp_path) == []


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _replace_pickle(path, payload: bytes) -> None:
    """Rewrite the zip's data.pkl member with ``payload`` (everything else kept)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, payload if name.endswith("data.pkl") else data)
