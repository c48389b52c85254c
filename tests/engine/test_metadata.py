"""read_checkpoint_metadata: the JSON record first (confirmed against the file), a code-free pickle
read for older files; one typed CheckpointRecord for every kind."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
import torch

from utils.training.engine import torchfile
from utils.training.engine.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.metadata import read_checkpoint_metadata, read_metadata_record
from utils.training.engine.record import CheckpointRecord
from utils.training.engine.torchfile import INTERRUPTED_FIX

from .helpers import TinyNet, save, write_legacy

LEGACY_NAME = "checkpoint_epoch0009_step000009_20251122_065455.pt"


class _Payload:
    """Unpickling this would create a file: the reader must never run it."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _without_record(path):
    """A copy of an engine file without its JSON member (same pickle, same tensors)."""
    copy = path.with_name("norecord_" + path.name)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w") as target:
        for info in source.infolist()[:-1]:
            target.writestr(info, source.read(info))
    return copy


def _refuse(*args, **kwargs):
    raise AssertionError("the fast path must not unpickle")


class TestReadCheckpointMetadata:
    def test_engine_file_from_record_without_unpickling(self, tmp_path, monkeypatch):
        path = save(
            tmp_path,
            epoch=3,
            step=30,
            val_loss=1.5,
            history=[{"epoch": 0, "train_loss": 2.0}],
            config={"model": {"n_layer": 2}},
            data_state={"epoch": 3, "batch_in_epoch": 0},
        )
        monkeypatch.setattr(torchfile, "load_structure", _refuse)
        monkeypatch.setattr(torch, "load", _refuse)
        record = read_checkpoint_metadata(path)
        assert isinstance(record, CheckpointRecord) and record.source == "record"
        assert (record.kind, record.epoch, record.global_step) == ("full", 3, 30)
        assert record.val_loss == 1.5 and record.model_config == {"n_layer": 2}
        assert record.history[0]["train_loss"] == 2.0 and record.data_state["epoch"] == 3

    def test_engine_file_without_record_falls_back_to_pickle(self, tmp_path):
        record = read_checkpoint_metadata(_without_record(save(tmp_path, epoch=1, step=7, val_loss=0.5)))
        assert (record.kind, record.source, record.global_step) == ("full", "pickle", 7)
        assert record.val_loss == 0.5 and record.tensor_count == 4

    def test_legacy_file(self, tmp_path):
        record = read_checkpoint_metadata(write_legacy(tmp_path, epoch=9, step=9, val_loss=2.5))
        assert (record.kind, record.format_version, record.epoch, record.global_step) == (
            "legacy",
            None,
            9,
            9,
        )
        assert dict(record.metrics) == {"train_loss": 3.0, "val_loss": 2.5, "learning_rate": 6e-4}
        assert record.has_optimizer is True and record.timestamp.startswith("2025-11-22")

    def test_legacy_tensor_metric_is_decoded(self, tmp_path):
        path = tmp_path / LEGACY_NAME
        torch.save(
            {"model_state_dict": TinyNet().state_dict(), "metrics": {"val_loss": torch.tensor(1.75)}}, path
        )
        record = read_checkpoint_metadata(path)
        assert record.val_loss == 1.75
        assert (record.epoch, record.global_step) == (9, 9)  # from the file name

    def test_bare_state_dict(self, tmp_path):
        path = tmp_path / "weights.pt"
        torch.save(TinyNet().state_dict(), path)
        record = read_checkpoint_metadata(path)
        assert (record.kind, record.epoch, record.tensor_count) == ("bare", None, 4)
        assert dict(record.metrics) == {"train_loss": None, "val_loss": None, "learning_rate": None}

    def test_old_non_zip_torch_format_is_read_by_the_restricted_reader(self, tmp_path):
        path = tmp_path / "old.pt"
        torch.save(TinyNet().state_dict(), path, _use_new_zipfile_serialization=False)
        record = read_checkpoint_metadata(path)
        assert (record.kind, record.tensor_count) == ("bare", 4)

    def test_size_comes_with_the_record(self, tmp_path):
        path = save(tmp_path, epoch=0, step=1)
        legacy = write_legacy(tmp_path, epoch=1, step=2)
        assert read_checkpoint_metadata(path).size_bytes == path.stat().st_size
        assert read_checkpoint_metadata(legacy).size_bytes == legacy.stat().st_size

    def test_symlink_is_followed_and_reported(self, tmp_path):
        target = save(tmp_path / "real", epoch=0, step=1)
        link = tmp_path / "link.pt"
        link.symlink_to(target)
        record = read_checkpoint_metadata(link)
        assert record.path == link and record.link_target == target.resolve()


class TestReadCheckpointMetadataRefusals:
    def test_missing_file(self, tmp_path):
        with pytest.raises(CheckpointNotFoundError, match="does not exist"):
            read_checkpoint_metadata(tmp_path / "nope.pt")

    def test_dangling_symlink(self, tmp_path):
        (tmp_path / "link.pt").symlink_to(tmp_path / "gone.pt")
        with pytest.raises(CheckpointNotFoundError, match="broken symbolic link"):
            read_checkpoint_metadata(tmp_path / "link.pt")

    def test_unreadable_file_is_not_called_damaged(self, tmp_path, monkeypatch):
        path = save(tmp_path, epoch=0, step=1)

        def refuse(*args, **kwargs):  # chmod 0 does not stop root, so refuse the open itself
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(os, "open", refuse)
        with pytest.raises(CheckpointError, match="cannot be read: Permission denied") as caught:
            read_checkpoint_metadata(path)
        assert not isinstance(caught.value, CorruptCheckpointError)

    def test_interrupted_save_has_the_loaders_fix(self, tmp_path):
        (tmp_path / "empty.pt").write_bytes(b"")
        with pytest.raises(CorruptCheckpointError, match=r"empty \(0 bytes\)[\s\S]*Fix: ") as caught:
            read_checkpoint_metadata(tmp_path / "empty.pt")
        assert caught.value.fix == INTERRUPTED_FIX

    def test_folder_of_other_files(self, tmp_path):
        (tmp_path / "notes.txt").write_text("hello")
        with pytest.raises(NotACheckpointError, match="not a checkpoint of a known layout"):
            read_checkpoint_metadata(tmp_path)

    @pytest.mark.parametrize("fraction", [0.0001, 0.01, 0.25, 0.5, 0.9, 0.999])
    def test_truncated(self, tmp_path, fraction):
        data = save(tmp_path, epoch=0, step=1).read_bytes()
        cut = tmp_path / "cut.pt"
        cut.write_bytes(data[: max(4, int(len(data) * fraction))])
        with pytest.raises(CorruptCheckpointError, match="truncated: its end .*is missing"):
            read_checkpoint_metadata(cut)

    def test_random_bytes_are_never_echoed(self, tmp_path):
        (tmp_path / "r.pt").write_bytes(b"\x00secret!" + os.urandom(200))
        with pytest.raises(CorruptCheckpointError, match="damaged or not a checkpoint .*binary") as caught:
            read_checkpoint_metadata(tmp_path / "r.pt")
        assert "secret" not in str(caught.value)

    def test_zip_that_is_not_a_torch_file(self, tmp_path):
        with zipfile.ZipFile(tmp_path / "z.pt", "w") as archive:
            archive.writestr("readme.txt", "hello")
        with pytest.raises(CorruptCheckpointError, match="not one written by torch.save"):
            read_checkpoint_metadata(tmp_path / "z.pt")

    @pytest.mark.parametrize("obj", [[1, 2], torch.ones(2), {"epoch": 1}])
    def test_torch_file_without_weights(self, tmp_path, obj):
        torch.save(obj, tmp_path / "x.pt")
        with pytest.raises(NotACheckpointError, match="is a PyTorch file, but holds .*not model weights"):
            read_checkpoint_metadata(tmp_path / "x.pt")

    def test_malicious_pickle_is_refused_and_not_run(self, tmp_path):
        target = tmp_path / "pwned.txt"
        torch.save(
            {"model_state_dict": TinyNet().state_dict(), "x": _Payload(str(target))}, tmp_path / "evil.pt"
        )
        with pytest.raises(UnsafeCheckpointError, match="needs `.*open`"):
            read_checkpoint_metadata(tmp_path / "evil.pt")
        assert not target.exists()


def _rewrite_record(path, change):
    """A copy of ``path`` whose JSON record was changed by ``change(record)``."""
    copy = path.with_name(path.name)  # same name: the name check still applies
    with zipfile.ZipFile(path) as source:
        infos = source.infolist()
        members = [(info, source.read(info)) for info in infos]
    record = json.loads(members[-1][1])
    change(record)
    with zipfile.ZipFile(copy, "w") as target:
        for info, data in members[:-1]:
            target.writestr(info, data)
        target.writestr(infos[-1].filename, json.dumps(record))
    return copy


class TestRecordIsEvidence:
    def test_a_record_that_claims_more_tensor_bytes_is_refused(self, tmp_path):
        path = _rewrite_record(
            save(tmp_path, epoch=0, step=1), lambda r: r["archive"].update(storage_bytes=10**12)
        )
        with pytest.raises(CorruptCheckpointError, match="disagrees with the file"):
            read_checkpoint_metadata(path)

    def test_a_record_whose_step_differs_from_the_name_is_refused(self, tmp_path):
        path = _rewrite_record(save(tmp_path, epoch=0, step=1), lambda r: r.update(global_step=10**12))
        with pytest.raises(CorruptCheckpointError, match="file name says global_step 1"):
            read_checkpoint_metadata(path)

    def test_a_zip_holding_only_a_record_is_refused(self, tmp_path):
        path = tmp_path / "checkpoint_epoch0001_step999999_20250101_000000.pt"
        record = {"format_version": 1, "epoch": 1, "global_step": 999999, "metrics": {"val_loss": 0.0}}
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/checkpoint_meta.json", json.dumps(record))
        with pytest.raises(CorruptCheckpointError, match="no data.pkl"):
            read_checkpoint_metadata(path)

    def test_huge_numbers_in_the_record_become_unknown(self, tmp_path):
        path = _rewrite_record(
            save(tmp_path, epoch=0, step=1),
            lambda r: r.update(metrics={"val_loss": 10**400, "train_loss": "x"}, timestamp="\x1b[2J"),
        )
        record = read_checkpoint_metadata(path)
        assert (record.val_loss, record.train_loss, record.timestamp) == (None, None, "2025-11-22T06:00:01")

    def test_records_written_before_archive_facts_still_list(self, tmp_path):
        path = _rewrite_record(save(tmp_path, epoch=0, step=1), lambda r: r.pop("archive"))
        assert read_checkpoint_metadata(path).global_step == 1


class TestReadMetadataRecord:
    def test_engine_file(self, tmp_path):
        path = save(tmp_path, epoch=2, step=20, val_loss=1.5)
        record = read_metadata_record(path)
        assert (record.kind, record.source, record.global_step) == ("full", "record", 20)
        assert record.val_loss == 1.5 and record.size_bytes == path.stat().st_size

    def test_none_without_a_record_and_nothing_unpickled(self, tmp_path, monkeypatch):
        legacy = write_legacy(tmp_path, epoch=0, step=1)
        monkeypatch.setattr(torchfile, "load_structure", _refuse)
        assert read_metadata_record(legacy) is None

    def test_broken_file_raises(self, tmp_path):
        (tmp_path / "empty.pt").write_bytes(b"")
        with pytest.raises(CorruptCheckpointError, match="empty"):
            read_metadata_record(tmp_path / "empty.pt")
