"""DCP's index read by the restricted unpickler, rebuilt from checked values, checked against the folder."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from tests.engine.sharded_helpers import write_dcp
from utils.training.engine.dcp_index import METADATA_NAME, read_dcp_metadata, tensor_entries
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
        with pytest.raises(
            UnsafeCheckpointError, match=r"refers to io\.open, which a safe reader does not run"
        ):
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


class TestTensorEntries:
    def test_only_tensors(self, folder):
        assert list(tensor_entries(read_dcp_metadata(folder))) == ["w", "b"]


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class TestMalformedIndex:
    def test_a_stub_of_another_class_is_refused(self, folder):
        def swap(metadata):
            name = next(iter(metadata.state_dict_metadata))
            metadata.state_dict_metadata[name] = metadata.storage_meta  # a StorageMeta where an entry belongs

        _rewrite_index(folder, swap)
        with pytest.raises(CorruptCheckpointError, match="malformed .*a StorageMeta where DCP writes"):
            read_dcp_metadata(folder)

    def test_a_negative_shape_is_refused(self, folder):
        def negative(metadata):
            entry = next(iter(metadata.state_dict_metadata.values()))
            entry.size = torch.Size([-1, 3])

        _rewrite_index(folder, negative)
        with pytest.raises(CorruptCheckpointError, match="not a tuple of non-negative integers"):
            read_dcp_metadata(folder)
