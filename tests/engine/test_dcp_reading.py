"""load_dcp: DCP's own reader, given the checked index, with non-tensor values read by weights_only."""

from __future__ import annotations

import pytest
import torch

from tests.engine.sharded_helpers import write_dcp
from utils.training.engine.dcp_reading import load_dcp
from utils.training.engine.errors import CorruptCheckpointError, UnsafeCheckpointError


@pytest.fixture
def folder(tmp_path):
    """A DCP folder: two tensors and a number, as ``dcp.save`` writes them."""
    return write_dcp(tmp_path / "dcp", {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2), "lr": 0.5})


class TestLoadDcp:
    def test_fills_fresh_tensors_without_a_process_group(self, folder):
        wanted = {"w": torch.empty(2, 3), "lr": None}
        load_dcp(folder, wanted, no_dist=True, partial=True)
        assert torch.equal(wanted["w"], torch.arange(6.0).reshape(2, 3)) and wanted["lr"] == 0.5

    def test_missing_key_is_an_error_naming_the_folder(self, folder):
        with pytest.raises(CorruptCheckpointError, match="cannot be read by torch.distributed.checkpoint"):
            load_dcp(folder, {"absent": torch.empty(1)}, no_dist=True)

    def test_a_stored_object_is_read_with_weights_only(self, tmp_path):
        folder = write_dcp(tmp_path / "dcp", {"w": torch.ones(1), "obj": _Exploit(str(tmp_path / "ran"))})
        with pytest.raises(UnsafeCheckpointError, match="'obj' needs arbitrary unpickling"):
            load_dcp(folder, {"obj": None}, no_dist=True, partial=True)
        assert not (tmp_path / "ran").exists()


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))
