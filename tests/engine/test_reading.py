"""read_checkpoint_file: how torch.load's many failures become the project's errors."""

from __future__ import annotations

import warnings

import pytest
import torch

from utils.training.engine.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.reading import INTERRUPTED_FIX, open_checkpoint, read_checkpoint_file


class _System:
    def __reduce__(self):
        return (print, ("payload ran",))


class TestReadCheckpointFile:
    def test_zip_files_are_memory_mapped_and_legacy_files_are_not(self, tmp_path):
        torch.save({"w": torch.ones(2)}, tmp_path / "new.pt")
        torch.save({"w": torch.ones(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
        assert read_checkpoint_file(tmp_path / "new.pt").mmap is True
        assert read_checkpoint_file(tmp_path / "old.pt").mmap is False
        assert torch.equal(read_checkpoint_file(tmp_path / "old.pt").obj["w"], torch.ones(2))

    def test_refused_global_is_named(self, tmp_path, capsys):
        torch.save({"x": _System()}, tmp_path / "e.pt")
        with pytest.raises(UnsafeCheckpointError, match=r"needs `(builtins\.)?print`"):
            read_checkpoint_file(tmp_path / "e.pt")
        assert "payload ran" not in capsys.readouterr().out

    def test_trusted_file_is_unpickled(self, tmp_path, capsys):
        torch.save({"x": _System()}, tmp_path / "e.pt")
        read_checkpoint_file(tmp_path / "e.pt", trust_pickle=True)
        assert "payload ran" in capsys.readouterr().out  # the opt-in really runs the file's code

    def test_legacy_file_cut_inside_a_torch_name_is_damage_not_a_refusal(self, tmp_path):
        torch.save({"w": torch.ones(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
        data = (tmp_path / "old.pt").read_bytes()
        cut = data.index(b"_rebuild_tensor") + len(b"_rebuild_tens")
        (tmp_path / "old.pt").write_bytes(data[:cut])
        with pytest.raises(CorruptCheckpointError, match="cannot be read"):
            read_checkpoint_file(tmp_path / "old.pt")

    @pytest.mark.parametrize("cut", [10, 200, 2000])
    def test_truncated_zip_says_the_save_was_interrupted(self, tmp_path, cut):
        torch.save({"w": torch.ones(1000)}, tmp_path / "t.pt")
        (tmp_path / "t.pt").write_bytes((tmp_path / "t.pt").read_bytes()[:-cut])
        with pytest.raises(CorruptCheckpointError, match="truncated") as caught:
            read_checkpoint_file(tmp_path / "t.pt")
        assert caught.value.fix == INTERRUPTED_FIX

    def test_torch_warnings_before_a_failure_are_not_printed(self, tmp_path, monkeypatch):
        (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 64)

        def warn_then_fail(*args, **kwargs):
            warnings.warn("Detected pickle protocol 49 in the checkpoint", UserWarning, stacklevel=2)
            raise RuntimeError("PytorchStreamReader failed finding central directory")

        monkeypatch.setattr(torch, "load", warn_then_fail)
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            with pytest.raises(CorruptCheckpointError, match="truncated"):
                read_checkpoint_file(tmp_path / "bad.pt")
        assert shown == []  # the user sees our error alone

    def test_torch_warnings_of_a_successful_load_are_reported(self, tmp_path, monkeypatch):
        torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
        real_load = torch.load

        def warn_then_load(*args, **kwargs):
            warnings.warn("something torch wants said", UserWarning, stacklevel=2)
            return real_load(*args, **kwargs)

        monkeypatch.setattr(torch, "load", warn_then_load)
        assert read_checkpoint_file(tmp_path / "ok.pt").warnings == ["torch: something torch wants said"]


class TestOpenCheckpoint:
    def test_reads_the_file(self, tmp_path):
        (tmp_path / "a.pt").write_bytes(b"abc")
        with open_checkpoint(tmp_path / "a.pt") as file:
            assert file.read() == b"abc"

    @pytest.mark.parametrize(
        ("name", "problem"),
        [
            ("missing.pt", "does not exist"),
            ("link.pt", "is a broken symbolic link"),
            ("folder", "is a folder, not a checkpoint file"),
            ("file.txt/x.pt", "a part of its path is a file"),
        ],
    )
    def test_not_found_cases_are_one_class(self, tmp_path, name, problem):
        (tmp_path / "link.pt").symlink_to(tmp_path / "gone.pt")
        (tmp_path / "folder").mkdir()
        (tmp_path / "file.txt").write_text("x")
        with pytest.raises(CheckpointNotFoundError, match=problem) as caught:
            with open_checkpoint(tmp_path / name):
                pass
        assert caught.value.path == str(tmp_path / name) and caught.value.fix

    def test_an_os_error_while_reading_is_mapped_too(self, tmp_path):
        (tmp_path / "a.pt").write_bytes(b"abc")
        with pytest.raises(CheckpointError, match="cannot be read: Input/output error") as caught:
            with open_checkpoint(tmp_path / "a.pt"):
                raise OSError(5, "Input/output error")
        assert type(caught.value) is CheckpointError and isinstance(caught.value.__cause__, OSError)

    def test_our_own_errors_pass_through(self, tmp_path):
        (tmp_path / "a.pt").write_bytes(b"abc")
        with pytest.raises(CorruptCheckpointError, match="mine"):
            with open_checkpoint(tmp_path / "a.pt"):
                raise CorruptCheckpointError(tmp_path / "a.pt", "mine")
