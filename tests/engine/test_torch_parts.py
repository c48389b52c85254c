"""Small torch pickles read by the engine's reader: a sharded folder's parts, DCP's pickled values."""

from __future__ import annotations

import io
import pickle

import pytest
import torch

from tests.engine.sharded_helpers import BytearrayBomb, torch_zip
from utils.training.engine.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.torch_parts import parse_torch_bytes, read_torch_part


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class TestReadTorchPart:
    def test_plain_values_and_tensors_that_outlive_the_file(self, tmp_path):
        path = tmp_path / "part.pt"
        torch.save({"step": 3, "betas": (0.9, 0.95), "losses": torch.arange(4.0).reshape(2, 2).t()}, path)
        part = read_torch_part(path)
        path.unlink()  # the tensors are copies: nothing points into the closed file
        assert part["step"] == 3 and part["betas"] == (0.9, 0.95)
        assert torch.equal(part["losses"], torch.arange(4.0).reshape(2, 2).t())

    def test_missing(self, tmp_path):
        with pytest.raises(CheckpointNotFoundError, match="does not exist"):
            read_torch_part(tmp_path / "absent.pt")

    def test_a_file_over_the_cap_is_refused_unread(self, tmp_path):
        path = tmp_path / "part.pt"
        torch.save({"x": torch.zeros(64)}, path)
        with pytest.raises(CorruptCheckpointError, match=r"refused: [\d,]+ bytes, more than the 100"):
            read_torch_part(path, max_bytes=100)

    def test_a_bytearray_bomb_is_refused(self, tmp_path):
        path = torch_zip(tmp_path / "part.pt", pickle.dumps({"x": BytearrayBomb()}, protocol=2))
        with pytest.raises(UnsafeCheckpointError, match="needs `builtins.bytearray`"):
            read_torch_part(path)

    def test_the_pre_zip_format_is_refused(self, tmp_path):
        path = tmp_path / "old.pt"
        torch.save({"x": 1}, path, _use_new_zipfile_serialization=False)
        with pytest.raises(CorruptCheckpointError, match="pre-1.6 format is not read here"):
            read_torch_part(path)

    def test_an_empty_file(self, tmp_path):
        (tmp_path / "empty.pt").write_bytes(b"")
        with pytest.raises(CorruptCheckpointError, match="is empty"):
            read_torch_part(tmp_path / "empty.pt")


class TestParseTorchBytes:
    def test_a_value_with_a_tensor(self):
        value = parse_torch_bytes(_saved({"lr": 0.1, "t": torch.arange(3)}), "/run/ck")
        assert value["lr"] == 0.1 and torch.equal(value["t"], torch.arange(3))

    def test_a_tensor_whose_data_is_cut_short(self):
        data = _saved(torch.arange(1000))
        with pytest.raises(CorruptCheckpointError, match="/run/ck"):
            parse_torch_bytes(data[: len(data) // 2], "/run/ck")

    def test_a_pickle_that_would_run_code(self, tmp_path):
        data = torch_zip(
            tmp_path / "v.pt", pickle.dumps(_Exploit(str(tmp_path / "ran")), protocol=2)
        ).read_bytes()
        with pytest.raises(UnsafeCheckpointError, match="needs `io.open`"):
            parse_torch_bytes(data, None)
        assert not (tmp_path / "ran").exists()


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))
