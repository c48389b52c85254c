"""DCP's index read by the restricted unpickler, rebuilt from checked values, checked against the folder."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.filesystem import _StorageInfo

from tests.engine.sharded_helpers import write_dcp
from utils.training.engine.dcp_index import METADATA_NAME, read_dcp_metadata, tensor_entries
from utils.training.engine.errors import CorruptCheckpointError, UnsafeCheckpointError
from utils.training.engine.untrusted import Limits


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
        with pytest.raises(
            CorruptCheckpointError, match="shard file '../elsewhere.distcp' that lies outside the folder"
        ):
            read_dcp_metadata(folder)

    @pytest.mark.parametrize(
        ("name", "problem"),
        [
            ("a\0b", r"holds a NUL character"),
            ("x" * 300, r"is 300 bytes long \(a file name has at most 255\)"),
        ],
        ids=["nul", "too-long"],
    )
    def test_shard_names_no_file_can_have_are_refused(self, folder, name, problem):
        """Before: ValueError (embedded null byte) and OSError (File name too long) escaped from os.stat."""
        _rewrite_index(folder, lambda metadata: _rename_shards(metadata, name))
        with pytest.raises(CorruptCheckpointError, match=problem):
            read_dcp_metadata(folder)

    def test_a_shard_name_is_printed_escaped(self, folder):
        _rewrite_index(folder, lambda metadata: _rename_shards(metadata, "missing\x1b[2J\x1b[31mFAKE"))
        with pytest.raises(
            CorruptCheckpointError, match=r"shard file missing\\x1b\[2J.* is missing"
        ) as caught:
            read_dcp_metadata(folder)
        assert "\x1b" not in str(caught.value)

    def test_two_values_in_the_same_bytes_are_refused(self, folder):
        def overlap(metadata):
            infos = list(metadata.storage_data.values())
            infos[1].offset = infos[0].offset

        _rewrite_index(folder, overlap)
        with pytest.raises(
            CorruptCheckpointError, match=r"stores two values in the same bytes of shard file __0_0"
        ):
            read_dcp_metadata(folder)

    def test_damaged_index(self, folder):
        (folder / METADATA_NAME).write_bytes(b"\x80\x04garbage")
        with pytest.raises(CorruptCheckpointError, match="damaged"):
            read_dcp_metadata(folder)


class TestClaimedSizes:
    """Every size the index claims must be backed by the bytes stored for it, before anyone allocates it."""

    def test_a_tensor_larger_than_its_bytes_is_refused(self, folder):
        """The review's folder: a 2^40-element tensor whose one chunk is 16 bytes of a shard (which
        also overlapped another value's bytes, refused by the shard check)."""

        def huge(metadata):
            size = torch.Size([1 << 40])
            metadata.state_dict_metadata["extra"] = dcp_metadata.TensorStorageMetadata(
                dcp_metadata.TensorProperties(dtype=torch.float32), size,
                [dcp_metadata.ChunkStorageMetadata(offsets=torch.Size([0]), sizes=size)],
            )  # fmt: skip
            metadata.storage_data[dcp_metadata.MetadataIndex("extra", torch.Size([0]))] = _StorageInfo(
                "__0_0.distcp", end, 16
            )

        shard = folder / "__0_0.distcp"
        end = shard.stat().st_size
        with open(shard, "ab") as file:
            file.write(b"\0" * 16)  # 16 bytes of its own: only the claimed size is wrong
        _rewrite_index(folder, huge)
        with pytest.raises(
            CorruptCheckpointError, match=r"extra has a chunk of 4,398,046,511,104 bytes stored in 16"
        ):
            read_dcp_metadata(folder)

    def test_chunks_that_do_not_cover_their_tensor(self, folder):
        def shrink(metadata):
            metadata.state_dict_metadata["w"].chunks[0].sizes = torch.Size([1, 3])

        _rewrite_index(folder, shrink)
        with pytest.raises(CorruptCheckpointError, match="w has chunks of 3 elements for a size of 6"):
            read_dcp_metadata(folder)

    def test_a_chunk_past_its_tensor(self, folder):
        def move(metadata):
            metadata.state_dict_metadata["w"].size = torch.Size([1, 3])

        _rewrite_index(folder, move)
        with pytest.raises(
            CorruptCheckpointError, match=r"w has a chunk at \[0, 0\] reaching past its size \[1, 3\]"
        ):
            read_dcp_metadata(folder)

    def test_a_pickled_value_over_the_cap(self, folder, monkeypatch):
        monkeypatch.setattr("utils.training.engine.dcp_index.LIMITS", Limits(pickle_bytes=64))
        with pytest.raises(
            CorruptCheckpointError, match=r"lr is a pickled value of [\d,]+ bytes \(at most 64"
        ):
            read_dcp_metadata(folder)

    def test_a_list_index_beyond_the_entries(self, folder):
        """The review's folder: a path index of 30,000,000 made a resume grow a list that long."""
        _rewrite_index(folder, lambda metadata: metadata.planner_data.update(lr=("optimizer", 30_000_000)))
        with pytest.raises(CorruptCheckpointError, match="a list index beyond its 3 entries"):
            read_dcp_metadata(folder)


class TestTensorEntries:
    def test_only_tensors(self, folder):
        assert list(tensor_entries(read_dcp_metadata(folder))) == ["w", "b"]


def _rename_shards(metadata, name: str) -> None:
    for info in metadata.storage_data.values():
        info.relative_path = name


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
