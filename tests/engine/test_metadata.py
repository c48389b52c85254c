"""read_checkpoint_metadata: the JSON record first, a code-free pickle read for older files."""

from __future__ import annotations

import os
import zipfile

import pytest
import torch

from utils.training.engine import metadata as metadata_module
from utils.training.engine.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.metadata import (
    METADATA_FIELDS,
    normalise_metadata,
    read_checkpoint_metadata,
    read_metadata_record,
)
from utils.training.engine.reading import INTERRUPTED_FIX

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
        monkeypatch.setattr(metadata_module, "load_structure", _refuse)
        monkeypatch.setattr(torch, "load", _refuse)
        meta = read_checkpoint_metadata(path)
        assert set(METADATA_FIELDS) <= set(meta) and meta["source"] == "record"
        assert (meta["kind"], meta["epoch"], meta["global_step"]) == ("full", 3, 30)
        assert meta["metrics"]["val_loss"] == 1.5 and meta["config"]["model"]["n_layer"] == 2
        assert meta["history"][0]["train_loss"] == 2.0 and meta["data_state"]["epoch"] == 3

    def test_engine_file_without_record_falls_back_to_pickle(self, tmp_path):
        meta = read_checkpoint_metadata(_without_record(save(tmp_path, epoch=1, step=7, val_loss=0.5)))
        assert (meta["kind"], meta["source"], meta["global_step"]) == ("full", "pickle", 7)
        assert meta["metrics"]["val_loss"] == 0.5 and meta["tensor_count"] == 4

    def test_legacy_file(self, tmp_path):
        meta = read_checkpoint_metadata(write_legacy(tmp_path, epoch=9, step=9, val_loss=2.5))
        assert (meta["kind"], meta["format_version"], meta["epoch"], meta["global_step"]) == (
            "legacy",
            None,
            9,
            9,
        )
        assert meta["metrics"] == {"train_loss": 3.0, "val_loss": 2.5, "learning_rate": 6e-4}
        assert meta["has_optimizer"] is True and meta["timestamp"].startswith("2025-11-22")

    def test_legacy_reads_only_the_pickle(self, tmp_path, monkeypatch):
        path = write_legacy(tmp_path, epoch=9, step=9)
        members = []
        original = zipfile.ZipFile.read
        monkeypatch.setattr(
            zipfile.ZipFile, "read", lambda self, name, *a: members.append(name) or original(self, name, *a)
        )
        read_checkpoint_metadata(path)
        assert [m.split("/", 1)[1] for m in members] == ["data.pkl"]

    def test_legacy_tensor_metric_is_decoded(self, tmp_path):
        path = tmp_path / LEGACY_NAME
        torch.save(
            {"model_state_dict": TinyNet().state_dict(), "metrics": {"val_loss": torch.tensor(1.75)}}, path
        )
        meta = read_checkpoint_metadata(path)
        assert meta["metrics"]["val_loss"] == 1.75
        assert (meta["epoch"], meta["global_step"]) == (9, 9)  # from the file name

    def test_bare_state_dict(self, tmp_path):
        path = tmp_path / "weights.pt"
        torch.save(TinyNet().state_dict(), path)
        meta = read_checkpoint_metadata(path)
        assert (meta["kind"], meta["epoch"], meta["tensor_count"]) == ("bare", None, 4)
        assert meta["metrics"] == {"train_loss": None, "val_loss": None, "learning_rate": None}

    def test_missing_file(self, tmp_path):
        with pytest.raises(CheckpointNotFoundError, match="does not exist"):
            read_checkpoint_metadata(tmp_path / "nope.pt")

    def test_dangling_symlink(self, tmp_path):
        (tmp_path / "link.pt").symlink_to(tmp_path / "gone.pt")
        with pytest.raises(CheckpointNotFoundError, match="broken symbolic link"):
            read_checkpoint_metadata(tmp_path / "link.pt")

    def test_size_comes_with_the_metadata(self, tmp_path):
        path = save(tmp_path, epoch=0, step=1)
        legacy = write_legacy(tmp_path, epoch=1, step=2)
        assert read_checkpoint_metadata(path)["size_bytes"] == path.stat().st_size
        assert read_checkpoint_metadata(legacy)["size_bytes"] == legacy.stat().st_size

    def test_unreadable_file_is_not_called_damaged(self, tmp_path, monkeypatch):
        path = save(tmp_path, epoch=0, step=1)

        def refuse(self, *args, **kwargs):  # chmod 0 does not stop root, so refuse the open itself
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(type(path), "open", refuse)
        with pytest.raises(CheckpointError, match="cannot be read: Permission denied") as caught:
            read_checkpoint_metadata(path)
        assert not isinstance(caught.value, CorruptCheckpointError)

    def test_interrupted_save_has_the_loaders_fix(self, tmp_path):
        (tmp_path / "empty.pt").write_bytes(b"")
        with pytest.raises(CorruptCheckpointError) as caught:
            read_checkpoint_metadata(tmp_path / "empty.pt")
        assert caught.value.fix == INTERRUPTED_FIX

    def test_folder_is_the_same_error_as_in_the_loader(self, tmp_path):
        with pytest.raises(CheckpointNotFoundError, match="is a folder"):
            read_checkpoint_metadata(tmp_path)

    def test_empty_file(self, tmp_path):
        (tmp_path / "empty.pt").write_bytes(b"")
        with pytest.raises(CorruptCheckpointError, match=r"empty \(0 bytes\)[\s\S]*Fix: "):
            read_checkpoint_metadata(tmp_path / "empty.pt")

    @pytest.mark.parametrize("fraction", [0.0001, 0.01, 0.25, 0.5, 0.9, 0.999])
    def test_truncated(self, tmp_path, fraction):
        data = save(tmp_path, epoch=0, step=1).read_bytes()
        cut = tmp_path / "cut.pt"
        cut.write_bytes(data[: max(4, int(len(data) * fraction))])
        with pytest.raises(CorruptCheckpointError, match="truncated .*no zip central directory"):
            read_checkpoint_metadata(cut)

    def test_random_bytes(self, tmp_path):
        (tmp_path / "r.pt").write_bytes(b"\x00garbage" + os.urandom(200))
        with pytest.raises(CorruptCheckpointError, match="not a PyTorch checkpoint"):
            read_checkpoint_metadata(tmp_path / "r.pt")

    def test_old_non_zip_torch_format(self, tmp_path):
        path = tmp_path / "old.pt"
        torch.save(TinyNet().state_dict(), path, _use_new_zipfile_serialization=False)
        with pytest.raises(CorruptCheckpointError, match="old-style .*non-zip"):
            read_checkpoint_metadata(path)

    def test_zip_that_is_not_a_torch_file(self, tmp_path):
        with zipfile.ZipFile(tmp_path / "z.pt", "w") as archive:
            archive.writestr("readme.txt", "hello")
        with pytest.raises(NotACheckpointError, match="not a PyTorch file"):
            read_checkpoint_metadata(tmp_path / "z.pt")

    @pytest.mark.parametrize(
        ("obj", "found"),
        [
            ([1, 2], "a list"),
            (torch.ones(2), "a single tensor of shape \\[2\\]"),
            ({"epoch": 1}, "a dict with keys \\['epoch'\\]"),
        ],
    )
    def test_torch_file_without_weights(self, tmp_path, obj, found):
        torch.save(obj, tmp_path / "x.pt")
        with pytest.raises(NotACheckpointError, match=f"holds {found}"):
            read_checkpoint_metadata(tmp_path / "x.pt")

    def test_malicious_pickle_is_refused_and_not_run(self, tmp_path):
        target = tmp_path / "pwned.txt"
        torch.save(
            {"model_state_dict": TinyNet().state_dict(), "x": _Payload(str(target))}, tmp_path / "evil.pt"
        )
        with pytest.raises(UnsafeCheckpointError, match="needs arbitrary unpickling.*open"):
            read_checkpoint_metadata(tmp_path / "evil.pt")
        assert not target.exists()


def _refuse(*args, **kwargs):
    raise AssertionError("the fast path must not unpickle")


class TestReadMetadataRecord:
    def test_engine_file(self, tmp_path):
        path = save(tmp_path, epoch=2, step=20, val_loss=1.5)
        meta = read_metadata_record(path)
        assert (meta["kind"], meta["source"], meta["global_step"]) == ("full", "record", 20)
        assert meta["metrics"]["val_loss"] == 1.5 and meta["size_bytes"] == path.stat().st_size

    def test_none_without_a_record_and_nothing_unpickled(self, tmp_path, monkeypatch):
        legacy = write_legacy(tmp_path, epoch=0, step=1)
        monkeypatch.setattr(metadata_module, "load_structure", _refuse)
        assert read_metadata_record(legacy) is None

    def test_broken_file_raises(self, tmp_path):
        (tmp_path / "empty.pt").write_bytes(b"")
        with pytest.raises(CorruptCheckpointError, match="empty"):
            read_metadata_record(tmp_path / "empty.pt")


class TestNormaliseMetadata:
    @pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), "3", True, None])
    def test_odd_counters_become_none(self, bad):
        meta = normalise_metadata({"epoch": bad, "global_step": bad, "format_version": bad})
        assert (meta["epoch"], meta["global_step"], meta["format_version"]) == (None, None, None)

    def test_metrics_are_finite_floats_tensors_included(self):
        raw = {"metrics": {"train_loss": torch.tensor(2.5), "val_loss": float("nan"), "learning_rate": 1}}
        assert normalise_metadata(raw)["metrics"] == {
            "train_loss": 2.5,
            "val_loss": None,
            "learning_rate": 1.0,
        }

    def test_empty_input_has_every_field(self):
        meta = normalise_metadata({})
        assert (meta["history"], meta["config"], meta["data_state"], meta["timestamp"]) == (
            [],
            {},
            None,
            None,
        )
        assert meta["metrics"] == {"train_loss": None, "val_loss": None, "learning_rate": None}
