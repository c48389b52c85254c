"""Which tensors of a DCP folder are one tensor stored under two names (a tied ``lm_head.weight``).

A model's ``state_dict()`` lists a tied parameter under each of its names, and DCP stores
each name in its own bytes: this notebook's GPT saves ``lm_head.weight`` and
``transformer.wte.weight`` twice. The loader and ``layer_changes`` treat two names as one
tensor when their ``storage_key`` is equal. DCP keeps no trace of the sharing, and equal
bytes alone do not prove it (every LayerNorm weight of a fresh model is ones), so only the
pairs a GPT ties (:data:`TIED_NAMES`, under any common prefix) are considered; such a pair
is one tensor when the index describes both alike (dtype, size, every chunk's place and
length) and, chunk by chunk, their bytes are the same ``torch.save`` output, which the zip
directory at the end of each chunk's bytes states (every member's CRC-32 and size). A few
kilobytes are read per tensor; the tensor data never.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from torch.distributed.checkpoint import metadata as dcp_metadata

from . import archive
from .errors import CheckpointError
from .untrusted import UntrustedFile, open_untrusted

__all__ = ["TIED_NAMES", "shared_storage_keys"]

# (output head, input embedding): the names a GPT ties, as this notebook's GPT and nanoGPT write them.
TIED_NAMES = (("lm_head.weight", "transformer.wte.weight"),)


def shared_storage_keys(
    folder: str | Path, metadata: dcp_metadata.Metadata, names: Mapping[str, str]
) -> dict[str, Hashable]:
    """A key shared by the two names of a tied pair whose stored data are the same bytes.

    Args:
        folder: the DCP folder (its index checked by ``dcp_index.read_dcp_metadata``).
        metadata: that index.
        names: our name -> DCP's name, for the tensors to compare.

    Returns:
        Our name -> ``("dcp", the DCP name of the embedding)`` for both names of every tied pair
        (:data:`TIED_NAMES`) stored as one tensor; every other name is left out.
    """
    keys: dict[str, Hashable] = {}
    with _Shards(Path(folder)) as shards:
        for head, embedding in _tied_pairs(names):
            left, right = names[head], names[embedding]
            if _layout(metadata, left) != _layout(metadata, right):
                continue
            stamp = _stamp(shards, metadata, left)
            if stamp is not None and stamp == _stamp(shards, metadata, right):
                keys[head] = keys[embedding] = ("dcp", right)
    return keys


def _tied_pairs(names: Mapping[str, str]) -> list[tuple[str, str]]:
    """(head, embedding) of every tied pair present, under the same prefix (``module.``, ...)."""
    pairs = []
    for name in names:
        for head, embedding in TIED_NAMES:
            if name.endswith(head) and (not name[: -len(head)] or name[: -len(head)].endswith(".")):
                partner = name[: -len(head)] + embedding
                if partner in names:
                    pairs.append((name, partner))
    return pairs


def _chunk_storage(metadata: dcp_metadata.Metadata, key: str) -> list[Any]:
    entry = metadata.state_dict_metadata[key]
    return [metadata.storage_data[dcp_metadata.MetadataIndex(key, chunk.offsets)] for chunk in entry.chunks]


def _layout(metadata: dcp_metadata.Metadata, key: str) -> tuple:
    """What the index says of a tensor's storage, but where its bytes are."""
    entry = metadata.state_dict_metadata[key]
    chunks = tuple(
        (tuple(chunk.offsets), tuple(chunk.sizes), info.length)
        for chunk, info in zip(entry.chunks, _chunk_storage(metadata, key), strict=True)
    )
    return str(entry.properties.dtype), tuple(entry.size), chunks


def _stamp(shards: _Shards, metadata: dcp_metadata.Metadata, key: str) -> tuple | None:
    """Every chunk's zip directory (names, CRC-32s, sizes); None when a chunk's bytes are not a zip."""
    stamps = []
    for info in _chunk_storage(metadata, key):
        try:
            window = _Window(shards.open(info.relative_path), info.offset, info.length)
            entries = archive.read_entries(window, archive.end_record(window))
        except (archive.ArchiveError, CheckpointError, OSError):
            return None
        stamps.append(tuple((e.name, e.crc, e.size) for e in entries.values()))
    return tuple(stamps)


class _Shards(contextlib.ExitStack):
    """The shard files, each opened once through the reading boundary."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self._folder = folder
        self._open: dict[str, UntrustedFile] = {}

    def open(self, name: str) -> UntrustedFile:
        if name not in self._open:
            self._open[name] = self.enter_context(open_untrusted(self._folder / name))
        return self._open[name]


class _Window:
    """Bytes ``start .. start + length`` of a file, read as a file of their own (for ``archive``)."""

    def __init__(self, handle: UntrustedFile, start: int, length: int) -> None:
        self._handle, self._start, self._length, self._position = handle, start, length, 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._position, self._length)[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        left = max(0, self._length - self._position)
        count = left if size is None or size < 0 else min(size, left)
        data = self._handle.read_at(self._start + self._position, count)
        self._position += count
        return data
