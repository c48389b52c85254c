"""load_dcp: DCP's own reader, given the checked index, with non-tensor values read by the engine's reader."""

from __future__ import annotations

import pytest
import torch

from tests.engine.sharded_helpers import BytearrayBomb, write_dcp
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

    def test_a_stored_object_that_would_run_code_is_refused(self, tmp_path):
        folder = write_dcp(tmp_path / "dcp", {"w": torch.ones(1), "obj": _Exploit(str(tmp_path / "ran"))})
        with pytest.raises(
            UnsafeCheckpointError, match=r"dcp: its value obj needs `io\.open` to be unpickled"
        ):
            load_dcp(folder, {"obj": None}, no_dist=True, partial=True)
        assert not (tmp_path / "ran").exists()

    def test_a_stored_bytearray_bomb_is_refused_before_it_is_built(self, tmp_path):
        """torch.load(weights_only=True) allows bytearray: a few bytes asked it for 1.5 GB."""
        folder = write_dcp(tmp_path / "dcp", {"w": torch.ones(1), "obj": BytearrayBomb()})
        with pytest.raises(UnsafeCheckpointError, match="its value obj needs `builtins.bytearray`"):
            load_dcp(folder, {"obj": None}, no_dist=True, partial=True)

    def test_a_failure_inside_dcp_is_printed_escaped(self, folder):
        with pytest.raises(CorruptCheckpointError, match=r"absent\\x1b") as caught:
            load_dcp(folder, {"absent\x1b[2J": torch.empty(1)}, no_dist=True)
        assert "\x1b" not in str(caught.value)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))
