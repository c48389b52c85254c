"""Reading torch.distributed.checkpoint folders safely: the checked index, DCP's reader, no code run."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from tests.engine.sharded_helpers import write_dcp
from utils.training.engine.dcp_reading import METADATA_NAME, load_dcp, read_dcp_metadata, tensor_entries
from utils.training.engine.errors import CorruptCheckpointError, UnsafeCheckpointError


@pytest.fixture
def folder(tmp_path):
    """A DCP folder: two tensors and a number, as ``dcp.save`` writes them."""
    return write_dcp(tmp_path / "dcp", {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2), "lr": 0.5})


def _rewrite_index(folder, change) -> None:
    """Change the index with the unrestricted unpickler (the test's own, trusted file)."""
    path = folder / METADATA_NAME
    metadata = pickle.loads(path.read_bytes())
    change(metadata)
    path.write_bytes(pickle.dumps(metadata))


class TestReadDcpMetadata:
    def test_reads_dcps_index(self, folder):
        entries = tensor_entries(read_dcp_metadata(folder))
        assert {name: tuple(entry.size) for name, entry in entries.items()} == {"w": (2, 3), "b": (2,)}

    def test_no_index(self, tmp_path):
        with pytest.raises(CorruptCheckpointError, match=r"has no \.metadata"):
            read_dcp_metadata(tmp_path)

    def test_a_pickle_that_would_run_code_is_refused_unrun(self, folder, tmp_path):
        marker = tmp_path / "ran"
        (folder / METADATA_NAME).write_bytes(pickle.dumps(_Exploit(str(marker))))
        with pytest.raises(UnsafeCheckpointError, match=r"io\.open, which a DCP metadata file never needs"):
            read_dcp_metadata(folder)
        assert not marker.exists()

    def test_missing_shard_is_named(self, folder):
        (folder / "__0_0.distcp").unlink()
        with pytest.raises(CorruptCheckpointError, match=r"shard file __0_0\.distcp is missing"):
            read_dcp_metadata(folder)

    def test_truncated_shard(self, folder):
        shard = folder / "__0_0.distcp"
        os.truncate(shard, shard.stat().st_size // 2)
        with pytest.raises(CorruptCheckpointError, match="is truncated"):
            read_dcp_metadata(folder)

    def test_shard_outside_the_folder_is_refused(self, folder):
        def escape(metadata):
            for info in metadata.storage_data.values():
                info.relative_path = "../elsewhere.distcp"

        _rewrite_index(folder, escape)
        with pytest.raises(CorruptCheckpointError, match="outside the folder"):
            read_dcp_metadata(folder)

    def test_damaged_index(self, folder):
        (folder / METADATA_NAME).write_bytes(b"\x80\x04garbage")
        with pytest.raises(CorruptCheckpointError, match="damaged"):
            read_dcp_metadata(folder)


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


class TestTensorEntries:
    def test_only_tensors(self, folder):
        assert list(tensor_entries(read_dcp_metadata(folder))) == ["w", "b"]


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))
