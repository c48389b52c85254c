"""The sharded checkpoint folder: listing by name, its record, its small parts, removing it safely."""

from __future__ import annotations

import json
import os
import pickle
import zlib

import pytest
import torch

from tests.engine.sharded_helpers import (
    BytearrayBomb,
    forge_sharded_record,
    restate,
    torch_zip,
    write_sharded,
)
from utils.training.engine import format as fmt
from utils.training.engine.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.naming import is_temporary_file
from utils.training.engine.sharded_folder import (
    DCP_METADATA_NAME,
    FOLDER_FACTS_KEY,
    RECORD_NAME,
    TRAIN_STATE_NAME,
    checkpoint_folders,
    file_name_problem,
    folder_facts,
    folder_size,
    rank_file_name,
    rank_parts,
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
    def test_reads_the_record_and_no_shard(self, tmp_path):
        folder = write_sharded(tmp_path, epoch=2, step=9, val_loss=0.5)
        for shard in folder.glob("*.distcp"):
            shard.write_bytes(b"\0" * shard.stat().st_size)  # the listing stats the shards, never reads them
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

    def test_a_record_nested_too_deeply_is_refused(self, tmp_path):
        folder = write_sharded(tmp_path)
        (folder / RECORD_NAME).write_text("[" * 50_000 + "]" * 50_000)
        with pytest.raises(
            CorruptCheckpointError, match="checkpoint_meta.json is refused: it is nested too deeply"
        ):
            read_folder_record(folder)

    def test_a_record_of_too_many_containers_is_refused_before_parsing(self, tmp_path):
        folder = write_sharded(tmp_path)
        (folder / RECORD_NAME).write_text("[" + "[]," * 200_000 + "[]]")
        with pytest.raises(CorruptCheckpointError, match="is refused: it holds 200,002 objects and arrays"):
            read_folder_record(folder)

    def test_a_shard_of_another_size_disagrees(self, tmp_path):
        folder = write_sharded(tmp_path)
        with open(folder / "__0_0.distcp", "ab") as shard:
            shard.write(b"more")
        with pytest.raises(
            CorruptCheckpointError, match=r"disagrees with the folder \(__0_0\.distcp: the record says"
        ):
            read_folder_record(folder)

    def test_a_missing_rank_file_disagrees(self, tmp_path):
        folder = write_sharded(tmp_path)
        (folder / rank_file_name(0)).unlink()
        with pytest.raises(
            CorruptCheckpointError, match=r"disagrees with the folder \(rank_00000\.pt is missing\)"
        ):
            read_folder_record(folder)

    def test_a_changed_index_disagrees(self, tmp_path):
        folder = write_sharded(tmp_path)
        data = bytearray((folder / DCP_METADATA_NAME).read_bytes())
        data[-2] ^= 0xFF  # same size, other bytes
        (folder / DCP_METADATA_NAME).write_bytes(bytes(data))
        with pytest.raises(CorruptCheckpointError, match=r"\.metadata's CRC-32 is \d+, the record says"):
            read_folder_record(folder)

    def test_a_name_and_record_that_disagree(self, tmp_path):
        folder = write_sharded(tmp_path, step=3)
        restate(folder, global_step=4)
        with pytest.raises(
            CorruptCheckpointError, match="the folder's name says global_step 3, the record 4"
        ):
            read_folder_record(folder)

    def test_a_record_that_states_fewer_rank_files_than_processes(self, tmp_path):
        folder = write_sharded(tmp_path)
        restate(folder, world_size=2)
        with pytest.raises(CorruptCheckpointError, match="it states no rank_00001.pt"):
            read_folder_record(folder)

    def test_a_stated_file_outside_the_folder(self, tmp_path):
        folder = write_sharded(tmp_path)
        facts = folder_facts(folder)
        restate(folder, **{FOLDER_FACTS_KEY: {**facts, "files": {**facts["files"], "../x": 1}}})
        with pytest.raises(CorruptCheckpointError, match="states a file named ../x, which cannot be inside"):
            read_folder_record(folder)

    def test_a_forged_record_beside_an_empty_index_is_refused(self, tmp_path):
        """The review's folder: a record claiming the best loss and the highest step, an empty .metadata."""
        folder = forge_sharded_record(tmp_path)
        with pytest.raises(
            CorruptCheckpointError, match=r"disagrees .*states no facts .*\.metadata is damaged"
        ):
            read_folder_record(folder)

    def test_a_record_without_facts_is_confirmed_by_its_index(self, tmp_path):
        """Folders saved before the facts existed: DCP's index must parse and name existing shards."""
        folder = write_sharded(tmp_path, step=5)
        record = json.loads((folder / RECORD_NAME).read_text())
        del record[FOLDER_FACTS_KEY]
        (folder / RECORD_NAME).write_text(json.dumps(record))
        assert read_folder_record(folder)["global_step"] == 5
        (folder / "__0_0.distcp").unlink()
        with pytest.raises(
            CorruptCheckpointError, match=r"states no facts .*shard file __0_0\.distcp is missing"
        ):
            read_folder_record(folder)


class TestFolderFacts:
    def test_every_file_but_the_record_and_the_index_crc(self, tmp_path):
        folder = write_sharded(tmp_path)
        facts = folder_facts(folder)
        assert facts["files"] == {p.name: p.stat().st_size for p in folder.iterdir() if p.name != RECORD_NAME}
        assert facts["metadata_crc32"] == zlib.crc32((folder / DCP_METADATA_NAME).read_bytes())

    def test_the_saver_writes_them_into_the_record(self, tmp_path):
        folder = write_sharded(tmp_path)
        assert json.loads((folder / RECORD_NAME).read_text())[FOLDER_FACTS_KEY] == folder_facts(folder)


class TestFileNameProblem:
    @pytest.mark.parametrize(
        ("name", "problem"),
        [("../x", "outside the folder"), ("a/b", "outside the folder"), ("..", "outside the folder"),
         ("a\0b", "NUL"), ("x" * 256, "256 bytes long"), ("\ud800", "no file name can")],
    )  # fmt: skip
    def test_names_no_file_inside_a_folder_can_have(self, name, problem):
        assert problem in file_name_problem(name)

    def test_a_plain_name(self):
        assert file_name_problem("__0_0.distcp") is None and file_name_problem("x" * 255) is None


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
    def test_reads_a_dict_with_its_tensors(self, tmp_path):
        part = read_part(write_sharded(tmp_path, step=7), TRAIN_STATE_NAME)
        assert part["global_step"] == 7 and "model_state_dict" not in part
        assert torch.equal(part[fmt.STEP_LOSSES_KEY], torch.arange(7, dtype=torch.float64))

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
        with pytest.raises(UnsafeCheckpointError, match="train_state.pt needs `io.open` .* would run code"):
            read_part(folder, TRAIN_STATE_NAME)
        assert not marker.exists()

    def test_a_bytearray_bomb_is_refused_before_it_is_built(self, tmp_path):
        """420 bytes that torch.load(weights_only=True) turns into a 1.5 GB bytearray."""
        folder = write_sharded(tmp_path)
        torch_zip(folder / TRAIN_STATE_NAME, pickle.dumps({"epoch": 0, "x": BytearrayBomb()}, protocol=2))
        with pytest.raises(UnsafeCheckpointError, match="train_state.pt needs `builtins.bytearray`"):
            read_part(folder, TRAIN_STATE_NAME)

    def test_not_a_dict(self, tmp_path):
        folder = write_sharded(tmp_path)
        torch.save([1, 2], folder / TRAIN_STATE_NAME)
        with pytest.raises(CorruptCheckpointError, match="train_state.pt holds a list, expected a dict"):
            read_part(folder, TRAIN_STATE_NAME)


class TestRankParts:
    def test_every_rank_in_order(self, tmp_path):
        parts = rank_parts(write_sharded(tmp_path), 1)
        assert len(parts) == 1 and set(parts[0]) == {"rng_state", "data_state"}


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
