"""save_checkpoint: atomic, safe to load with weights_only=True, retention that keeps best and newest."""

from __future__ import annotations

import collections
import errno
import json
import os
import pickle
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.training.engine import format as fmt
from utils.training.engine import torchfile
from utils.training.engine.checkpoint import (
    SAFE_LEAVES,
    RetentionPolicy,
    apply_retention,
    check_weights_only_safe,
    metadata_record,
    save_checkpoint,
    write_checkpoint_file,
)
from utils.training.engine.errors import CheckpointSaveError, CorruptCheckpointError, NotACheckpointError
from utils.training.engine.loading import load_model_weights
from utils.training.engine.metadata import read_checkpoint_metadata
from utils.training.engine.naming import checkpoint_filename, is_temporary_file, temporary_path_for
from utils.training.resume import restore_training_state

from .helpers import TinyNet, save, stepped_optimizer, write_legacy
from .sharded_helpers import forge_sharded_record, write_sharded


def _every_part():
    model = TinyNet()
    optimizer = stepped_optimizer(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    return {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 3},
        "history": [
            {"epoch": 0, "global_step": 5, "train_loss": 2.5, "val_loss": 2.4, "learning_rate": 1e-3}
        ],
        "config": {"model": {"n_layer": 2, "n_embd": 8}, "training": {"lr": 1e-3, "betas": (0.9, 0.95)}},
        "rng_state": {
            "torch": torch.get_rng_state(),
            "python": [3, list(range(5)), None],
            "numpy": ["MT19937", [1, 2]],
        },
        "data_state": {"epoch": 1, "batch_in_epoch": 3, "batches_per_epoch": 10, "seed": 1337},
        "step_losses": torch.tensor([2.5, 2.4, 2.3], dtype=torch.float64),
    }


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


class TestSaveCheckpoint:
    def test_weights_only_round_trip_of_every_key(self, tmp_path):
        parts = _every_part()
        model = parts.pop("model")
        path = save_checkpoint(
            tmp_path,
            model,
            parts.pop("optimizer"),
            epoch=1,
            global_step=13,
            metrics={"train_loss": 2.3, "val_loss": 2.4, "learning_rate": 1e-3},
            **parts,
        )
        loaded = torch.load(path, weights_only=True)
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded["model_state_dict"][name], tensor)
        assert loaded["optimizer_state_dict"]["state"][0]["exp_avg"].shape == model.fc1.weight.shape
        assert loaded["scheduler_state_dict"]["step_size"] == 1
        assert loaded["scaler_state_dict"]["_growth_tracker"] == 3
        assert torch.equal(loaded["rng_state"]["torch"], parts["rng_state"]["torch"])
        assert loaded["rng_state"]["python"] == [3, [0, 1, 2, 3, 4], None]
        assert loaded["data_state"] == parts["data_state"]
        assert torch.equal(loaded["step_losses"], parts["step_losses"])
        assert loaded["config"]["training"]["betas"] == (0.9, 0.95)
        assert (loaded["epoch"], loaded["global_step"], loaded["format_version"]) == (
            1,
            13,
            fmt.FORMAT_VERSION,
        )
        assert loaded["history"][0]["val_loss"] == 2.4 and isinstance(loaded["timestamp"], str)

    def test_name_and_returned_path(self, tmp_path):
        path = save(tmp_path, epoch=9, step=9)
        assert path.parent == tmp_path and path.name.startswith("checkpoint_epoch0009_step000009_")

    def test_creates_missing_folder(self, tmp_path):
        path = save(tmp_path / "a" / "b", epoch=0, step=1)
        assert path.exists()

    def test_json_record_is_the_last_archive_member(self, tmp_path):
        path = save(tmp_path, epoch=2, step=20, val_loss=1.25)
        with zipfile.ZipFile(path) as archive:
            last = archive.namelist()[-1]
            record = json.loads(archive.read(last))
        assert last.endswith("/" + fmt.METADATA_RECORD) and last.count("/") == 1
        assert record["metrics"]["val_loss"] == 1.25 and record["has_optimizer"] is False

    def test_wrapper_prefix_is_not_saved(self, tmp_path):
        path = save(tmp_path, epoch=0, step=1, model=torch.nn.DataParallel(TinyNet()))
        keys = torch.load(path, weights_only=True)["model_state_dict"].keys()
        assert keys and not any(k.startswith("module.") for k in keys)

    def test_no_temporary_file_remains(self, tmp_path):
        save(tmp_path, epoch=0, step=1)
        assert not [n for n in _files(tmp_path) if is_temporary_file(n)]

    def test_disk_full_keeps_earlier_files_and_leaves_no_temp(self, tmp_path, monkeypatch):
        earlier = save(tmp_path, epoch=0, step=1)
        before = earlier.read_bytes()

        def full_disk(obj, file, *args, **kwargs):
            file.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(torch, "save", full_disk)
        with pytest.raises(CheckpointSaveError, match=r"No space left on device[\s\S]*Fix: Free disk space"):
            save(tmp_path, epoch=1, step=2)
        assert _files(tmp_path) == [earlier.name] and earlier.read_bytes() == before

    def test_folder_that_is_a_file_raises_save_error(self, tmp_path):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        with pytest.raises(CheckpointSaveError, match="could not save"):
            save(blocker, epoch=0, step=1)

    def test_value_refused_by_weights_only_is_reported_before_writing(self, tmp_path):
        with pytest.raises(TypeError, match=r"\['rng_state'\]\['numpy'\] is a numpy.ndarray"):
            save(tmp_path, epoch=0, step=1, rng_state={"numpy": np.zeros(3)})
        assert not tmp_path.exists() or _files(tmp_path) == []

    def test_stale_temp_of_dead_writer_removed_live_one_kept(self, tmp_path):
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        stale = tmp_path / f".checkpoint_x.pt.tmp-{int(dead.stdout)}-abcd"
        live = temporary_path_for(tmp_path / "checkpoint_y.pt")  # this process: alive
        stale.write_bytes(b"x")
        live.write_bytes(b"x")
        save(tmp_path, epoch=0, step=1)
        assert not stale.exists() and live.exists()

    def test_default_retention_keeps_three(self, tmp_path):
        for step in range(1, 6):
            save(tmp_path, epoch=step, step=step, val_loss=float(step), retention=RetentionPolicy())
        assert len(_files(tmp_path)) == 3  # best (step 1) + newest two

    def test_model_without_weights_is_refused_before_writing(self, tmp_path):
        with pytest.raises(ValueError, match="model_state is empty"):
            save_checkpoint(tmp_path, torch.nn.ReLU(), epoch=0, global_step=1, metrics=None)
        assert _files(tmp_path) == []

    def test_record_facts_equal_the_pickle_facts(self, tmp_path):
        parts = _every_part()
        path = save_checkpoint(tmp_path, parts.pop("model"), epoch=0, global_step=1, metrics=None, **parts)
        torch.save(torch.load(path, weights_only=True), tmp_path / "copy.pt")  # same dict, no record
        record, pickled = read_checkpoint_metadata(path), read_checkpoint_metadata(tmp_path / "copy.pt")
        facts = ("has_optimizer", "has_rng_state", "tensor_count")
        assert (record.source, pickled.source) == ("record", "pickle")
        assert (
            [getattr(record, k) for k in facts]
            == [getattr(pickled, k) for k in facts]
            == [True, True, 4 + 12 + 2]
        )  # + RNG state, step losses


class TestRetentionPolicy:
    def test_defaults(self):
        assert (RetentionPolicy().keep_best, RetentionPolicy().keep_last) == (1, 2)

    @pytest.mark.parametrize("kwargs", [{"keep_last": 0}, {"keep_best": -1}, {"keep_last": 1.5}])
    def test_invalid_values(self, kwargs):
        with pytest.raises(ValueError, match="expected an integer"):
            RetentionPolicy(**kwargs)


class TestApplyRetention:
    def test_never_deletes_best_or_newest(self, tmp_path):
        paths = [save(tmp_path, epoch=i, step=i, val_loss=v) for i, v in enumerate([0.5, 3.0, 2.0, 4.0, 9.0])]
        apply_retention(tmp_path, RetentionPolicy(keep_best=1, keep_last=1))
        assert _files(tmp_path) == sorted([paths[0].name, paths[4].name])

    def test_unrelated_legacy_and_broken_files_are_never_deleted(self, tmp_path):
        legacy = write_legacy(tmp_path, epoch=0, step=0, val_loss=9.0)
        (tmp_path / "notes.txt").write_text("mine")
        (tmp_path / "checkpoint_epoch0000_step000001_20250101_000000.pt").write_bytes(b"")
        (tmp_path / "model.pt").write_bytes(b"junk")
        keep = {p.name for p in tmp_path.iterdir()}
        for step in range(2, 6):
            save(tmp_path, epoch=step, step=step, val_loss=float(step))
        deleted = apply_retention(tmp_path, RetentionPolicy(keep_best=1, keep_last=1))
        assert keep <= set(_files(tmp_path)) and legacy.exists()
        assert len(deleted) == 2

    def test_protected_path_survives(self, tmp_path):
        old = save(tmp_path, epoch=0, step=1, val_loss=5.0)
        save(tmp_path, epoch=1, step=2, val_loss=1.0)
        save(tmp_path, epoch=2, step=3, val_loss=2.0)
        apply_retention(tmp_path, RetentionPolicy(keep_best=1, keep_last=1), protect=[old])
        assert old.exists() and len(_files(tmp_path)) == 3

    def test_reads_only_json_records_never_a_pickle(self, tmp_path, monkeypatch):
        for step in range(3):  # legacy files with engine names: read on every save before
            write_legacy(tmp_path, epoch=step, step=step, val_loss=0.1)
        (tmp_path / "foreign.pt").write_bytes(b"PK\x03\x04junk")
        paths = [save(tmp_path, epoch=step, step=step, val_loss=float(step)) for step in range(10, 14)]
        unpickled = []
        monkeypatch.setattr(torchfile, "load_structure", lambda data: unpickled.append(data))
        deleted = apply_retention(tmp_path, RetentionPolicy(keep_best=1, keep_last=1))
        assert unpickled == [] and sorted(deleted) == paths[1:3] and len(_files(tmp_path)) == 3 + 1 + 2

    def test_a_file_renamed_to_an_engine_name_without_a_record_is_kept(self, tmp_path):
        torch.save({"model_state_dict": TinyNet().state_dict(), "format_version": 1}, tmp_path / "x.pt")
        stray = (tmp_path / "x.pt").rename(tmp_path / checkpoint_filename(0, 0))
        for step in range(1, 4):
            save(tmp_path, epoch=step, step=step, val_loss=float(step))
        apply_retention(tmp_path, RetentionPolicy(keep_best=1, keep_last=1))
        assert stray.exists() and len(_files(tmp_path)) == 3

    def test_sharded_folders_are_candidates_like_files(self, tmp_path):
        folders = [
            write_sharded(tmp_path, epoch=s, step=s, val_loss=v) for s, v in [(1, 0.5), (2, 3.0), (3, 2.0)]
        ]
        newest = save(tmp_path, epoch=4, step=4, val_loss=4.0)
        deleted = apply_retention(tmp_path, RetentionPolicy(keep_best=1, keep_last=2))
        assert deleted == [folders[1]]
        assert _files(tmp_path) == sorted([folders[0].name, folders[2].name, newest.name])

    def test_a_forged_sharded_record_is_never_best_nor_newest(self, tmp_path):
        genuine = [save(tmp_path, epoch=s, step=s, val_loss=v) for s, v in [(1, 0.5), (2, 3.0), (3, 2.0)]]
        forged = forge_sharded_record(tmp_path)  # believed, it would be best and newest: every file deleted
        deleted = apply_retention(tmp_path, RetentionPolicy(keep_best=1, keep_last=1))
        assert deleted == [genuine[1]] and forged.is_dir()
        assert _files(tmp_path) == sorted([genuine[0].name, genuine[2].name, forged.name])

    def test_an_uncommitted_folder_is_never_deleted(self, tmp_path):
        unfinished = write_sharded(tmp_path, epoch=0, step=0, val_loss=9.0)
        (unfinished / fmt.METADATA_RECORD).unlink()  # no record: not a checkpoint, never a candidate
        for step in range(1, 4):
            save(tmp_path, epoch=step, step=step, val_loss=float(step))
        apply_retention(tmp_path, RetentionPolicy(keep_best=1, keep_last=1))
        assert unfinished.is_dir() and len(_files(tmp_path)) == 3


class TestWriteCheckpointFile:
    def test_writes_dict_with_record(self, tmp_path):
        checkpoint = fmt.build_checkpoint(model_state=TinyNet().state_dict(), epoch=0, global_step=3)
        path = write_checkpoint_file(tmp_path / "x.pt", checkpoint)
        assert torch.load(path, weights_only=True)["global_step"] == 3
        assert _files(tmp_path) == ["x.pt"]


class TestMetadataRecord:
    def test_facts_added(self):
        checkpoint = fmt.build_checkpoint(
            model_state=TinyNet().state_dict(),
            epoch=0,
            global_step=3,
            rng_state={"torch": torch.get_rng_state()},
        )
        record = metadata_record(checkpoint)
        assert record["has_rng_state"] is True and record["has_optimizer"] is False
        assert record["tensor_count"] == 5  # 4 weights + the RNG state
        json.dumps(record)

    def test_empty_optimizer_state_is_no_optimizer(self):
        checkpoint = fmt.build_checkpoint(
            model_state=TinyNet().state_dict(), epoch=0, global_step=3, optimizer_state={}
        )
        assert metadata_record(checkpoint)["has_optimizer"] is False

    def test_tensor_count_given_by_the_caller(self):
        checkpoint = fmt.build_checkpoint(model_state=TinyNet().state_dict(), epoch=0, global_step=3)
        assert metadata_record(checkpoint, tensor_count=4)["tensor_count"] == 4


class TestCheckWeightsOnlySafe:
    def test_plain_values_pass(self):
        check_weights_only_safe({"a": [1, 2.0, "x", None, (True,)], "t": torch.ones(1), "d": torch.float16})

    @pytest.mark.parametrize("leaf", [*SAFE_LEAVES, set], ids=lambda t: t.__name__)
    def test_every_accepted_leaf_loads_with_weights_only(self, tmp_path, leaf):
        samples = {
            str: "s",
            bytes: b"b",
            int: 3,
            float: 1.5,
            bool: True,
            complex: 1j,
            type(None): None,
            set: {1, 2},
        }
        samples.update(
            {torch.dtype: torch.float16, torch.device: torch.device("cpu"), torch.Size: torch.Size([2])}
        )
        value = samples[leaf]
        assert check_weights_only_safe({"x": value}) == 0
        torch.save({"x": value}, tmp_path / "leaf.pt")
        assert torch.load(tmp_path / "leaf.pt", weights_only=True)["x"] == value

    def test_returns_the_tensor_count(self):
        assert check_weights_only_safe({"a": [torch.ones(1), (torch.ones(2), {3})], "b": torch.ones(1)}) == 3

    @pytest.mark.parametrize(
        "value", [os.environ, collections.defaultdict(int), Path("x"), frozenset({1})], ids=str
    )
    def test_object_is_named(self, value):
        with pytest.raises(TypeError, match=r"checkpoint\['cfg'\] is a .*weights_only=True\) refuses"):
            check_weights_only_safe({"cfg": value})


def _forged(folder: Path, step: int, storage_bytes: int, run_id: str | None = None) -> Path:
    """A zip whose record claims the best loss and a huge step around a pickle of ``{}`` and one
    1-byte member: every archive fact it states is true of the archive."""
    pkl = pickle.dumps({}, protocol=2)
    record = {fmt.FORMAT_VERSION_KEY: fmt.FORMAT_VERSION, "epoch": 9, "global_step": step, "tensor_count": 1,
              "metrics": {"val_loss": 0.0}, fmt.RUN_ID_KEY: run_id,
              fmt.ARCHIVE_FACTS_KEY: {"entries": 2, "data_pkl_crc32": zlib.crc32(pkl), "data_pkl_size": len(pkl),
                                      "storage_bytes": storage_bytes}}  # fmt: skip
    path = folder / checkpoint_filename(9, step)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/data/0", b"x")
        archive.writestr(f"archive/{fmt.METADATA_RECORD}", json.dumps(record))
    return path


class TestRetentionScopedToOneRun:
    def test_another_runs_checkpoints_are_never_deleted(self, tmp_path):
        other = [save(tmp_path, epoch=i, step=100 + i, val_loss=0.1, run_id="earlier-run") for i in range(3)]
        for step in range(1, 6):
            save(tmp_path, epoch=step, step=step, val_loss=float(step), run_id="this-run",
                 retention=RetentionPolicy(keep_best=1, keep_last=1))  # fmt: skip
        assert all(path.exists() for path in other)
        assert len(_files(tmp_path)) == 3 + 2  # this run: its best (step 1) and its newest (step 5)

    def test_a_forged_record_never_pushes_genuine_checkpoints_out(self, tmp_path):
        genuine = [save(tmp_path, epoch=i, step=i, val_loss=1.0 / i, run_id="run") for i in (1, 2, 3)]
        forged = _forged(tmp_path, 10**12, storage_bytes=1)
        save(
            tmp_path,
            epoch=4,
            step=4,
            val_loss=0.9,
            run_id="run",
            retention=RetentionPolicy(keep_best=1, keep_last=2),
        )
        assert genuine[2].exists() and forged.exists()  # the genuine best (step 3) stays

    def test_a_record_claiming_no_tensor_bytes_is_refused(self, tmp_path):
        forged = _forged(tmp_path, 10**12, storage_bytes=0)
        with pytest.raises(CorruptCheckpointError, match="disagrees with the file"):
            read_checkpoint_metadata(forged)

    def test_loading_a_forged_file_is_a_clear_refusal(self, tmp_path):
        forged = _forged(tmp_path, 10**12, storage_bytes=1)
        with pytest.raises(NotACheckpointError, match="holds an empty dict, not model weights"):
            load_model_weights(TinyNet(), forged, device="cpu")

    def test_a_resumed_run_keeps_its_id(self, tmp_path):
        path = save(tmp_path, epoch=0, step=1, run_id="run-a")
        assert read_checkpoint_metadata(path).run_id == "run-a"
        state = restore_training_state(path, TinyNet(), None)
        assert state.run_id == "run-a"
