"""DCP's index (a folder's ``.metadata``), read without running code and checked against the folder.

``.metadata`` is a plain pickle of ``torch.distributed.checkpoint``'s ``Metadata``; DCP's own
reader hands it to ``pickle.load``. Here it goes through the engine's restricted, budgeted
unpickler (``safe_unpickle.read_dcp_metadata_structure``), which returns inert stubs; this
module rebuilds DCP's dataclasses from their checked plain values (names, shapes, dtypes,
offsets; anything else refuses the folder), then checks it against the folder:

* every shard file it names is a plain name inside the folder, a regular file, and long
  enough, and no two values claim the same bytes of a shard;
* every tensor's chunks lie inside it, cover it, and each fits in the bytes stored for it,
  so no size the index claims makes a reader allocate more than the shards hold;
* every list index in a value's path is below the number of entries, and every pickled
  (non-tensor) value is at most ``LIMITS.pickle_bytes`` (DCP's reader reads it whole).

Only then does DCP's reader (``dcp_reading``) see it.
"""

from __future__ import annotations

import math
import os
import pickle
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.filesystem import _StorageInfo

from .errors import CheckpointError, CheckpointNotFoundError, CorruptCheckpointError, UnsafeCheckpointError
from .safe_unpickle import (
    BudgetExceededError,
    ObjectStub,
    RefusedGlobalError,
    RefusedOpcodeError,
    read_dcp_metadata_structure,
)
from .sharded_folder import DCP_METADATA_MAX_BYTES, DCP_METADATA_NAME, file_name_problem
from .text import safe_text, short_repr
from .untrusted import LIMITS, read_small_file

__all__ = ["DCP_FIX", "DCP_REFUSED_FIX", "METADATA_NAME", "read_dcp_metadata", "tensor_entries"]

METADATA_NAME = DCP_METADATA_NAME
DCP_REFUSED_FIX = "load only checkpoints from a source you trust; this one is refused"
DCP_FIX = (
    "use another checkpoint; this folder is incomplete or was not written by torch.distributed.checkpoint"
)


class _Malformed(Exception):
    """A value of the index that is not what DCP writes (turned into one CorruptCheckpointError)."""


def read_dcp_metadata(folder: str | os.PathLike) -> dcp_metadata.Metadata:
    """DCP's index of ``folder``, read safely, rebuilt from checked values and checked against the files.

    Raises:
        CorruptCheckpointError: no ``.metadata``, a damaged or malformed one, or a shard file it
            names that is missing, outside the folder or too short (the message names it).
        UnsafeCheckpointError: the pickle refers to anything but DCP's metadata types.
    """
    folder = Path(folder)
    stub = _structure(folder, _read(folder))
    try:
        metadata = _rebuilt(stub)
    except (_Malformed, TypeError, ValueError) as error:
        raise CorruptCheckpointError(
            folder, f"its {METADATA_NAME} is malformed ({safe_text(error, 200)})", fix=DCP_FIX
        ) from error
    _check_shards(folder, metadata)
    _check_values(folder, metadata)
    return metadata


def tensor_entries(metadata: dcp_metadata.Metadata) -> dict[str, dcp_metadata.TensorStorageMetadata]:
    """The tensors the checkpoint holds (DCP's flattened names -> size and dtype), in its order."""
    return {
        name: entry
        for name, entry in metadata.state_dict_metadata.items()
        if isinstance(entry, dcp_metadata.TensorStorageMetadata)
    }


def _read(folder: Path) -> bytes:
    try:
        return read_small_file(folder / METADATA_NAME, DCP_METADATA_MAX_BYTES)
    except CheckpointNotFoundError:
        raise CorruptCheckpointError(
            folder, f"has no {METADATA_NAME}: not a complete torch.distributed.checkpoint folder", fix=DCP_FIX
        ) from None
    except CheckpointError as error:
        raise CorruptCheckpointError(folder, f"its {METADATA_NAME} {error.problem}", fix=DCP_FIX) from error


def _structure(folder: Path, data: bytes) -> ObjectStub:
    try:
        return read_dcp_metadata_structure(data)
    except (RefusedGlobalError, RefusedOpcodeError) as error:
        raise UnsafeCheckpointError(
            folder, f"its {METADATA_NAME} {error}: reading it would run code from the file",
            fix=DCP_REFUSED_FIX,
        ) from error  # fmt: skip
    except BudgetExceededError as error:
        raise CorruptCheckpointError(
            folder, f"its {METADATA_NAME} is refused: {error}", fix=DCP_FIX
        ) from error
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as error:
        raise CorruptCheckpointError(
            folder, f"its {METADATA_NAME} is damaged ({safe_text(error, 200)})", fix=DCP_FIX
        ) from error


def _rebuilt(stub: ObjectStub) -> dcp_metadata.Metadata:
    """DCP's ``Metadata`` from the unpickler's stub, every value checked on the way."""
    entries = {
        _text(name): _entry(value) for name, value in _mapping(stub.get("state_dict_metadata")).items()
    }
    paths = {_text(name): _path(value) for name, value in _mapping(stub.get("planner_data") or {}).items()}
    storage = {_index(key): _storage(value) for key, value in _mapping(stub.get("storage_data")).items()}
    for path in paths.values():  # a list index the size of the index at most: nothing grows past it
        if any(type(step) is int and not 0 <= step < len(entries) for step in path):
            raise _Malformed(f"a state-dict path with a list index beyond its {len(entries):,} entries")
    version = stub.get("version")
    return dcp_metadata.Metadata(
        state_dict_metadata=entries,
        planner_data=paths,
        storage_data=storage,
        storage_meta=dcp_metadata.StorageMeta(),
        version=version if isinstance(version, str) else None,
    )


def _entry(stub: Any) -> dcp_metadata.TensorStorageMetadata | dcp_metadata.BytesStorageMetadata:
    if _is(stub, "BytesStorageMetadata"):
        return dcp_metadata.BytesStorageMetadata()
    properties = _of(stub, "TensorStorageMetadata").get("properties")
    dtype = _of(properties, "TensorProperties").get("dtype")
    if not isinstance(dtype, torch.dtype):
        raise _Malformed(f"a tensor without a dtype ({type(dtype).__name__})")
    chunks = stub.get("chunks")
    if not isinstance(chunks, list):
        raise _Malformed("a tensor without its list of chunks")
    return dcp_metadata.TensorStorageMetadata(
        properties=dcp_metadata.TensorProperties(dtype=dtype),
        size=_size(stub.get("size")),
        chunks=[
            dcp_metadata.ChunkStorageMetadata(offsets=_size(c.get("offsets")), sizes=_size(c.get("sizes")))
            for c in (_of(chunk, "ChunkStorageMetadata") for chunk in chunks)
        ],
    )


def _index(stub: Any) -> dcp_metadata.MetadataIndex:
    stub = _of(stub, "MetadataIndex")
    offset, index = stub.get("offset"), stub.get("index")
    if index is not None and type(index) is not int:
        raise _Malformed("a shard index that is not an integer")
    return dcp_metadata.MetadataIndex(
        _text(stub.get("fqn")), None if offset is None else _size(offset), index
    )


def _storage(stub: Any) -> _StorageInfo:
    stub = _of(stub, "_StorageInfo")
    offset, length, transforms = stub.get("offset"), stub.get("length"), stub.get("transform_descriptors")
    if type(offset) is not int or type(length) is not int or min(offset, length) < 0:
        raise _Malformed("a shard with a bad offset or length")
    if transforms:  # compression and other extensions: DCP's reader would run them
        raise _Malformed(
            f"shards stored with transforms {short_repr(transforms)}, which this reader does not apply"
        )
    return _StorageInfo(_text(stub.get("relative_path")), offset, length)


def _is(stub: Any, name: str) -> bool:
    return isinstance(stub, ObjectStub) and stub.class_name == name


def _of(stub: Any, name: str) -> ObjectStub:
    if not _is(stub, name):
        shown = stub.class_name if isinstance(stub, ObjectStub) else type(stub).__name__
        raise _Malformed(f"a {safe_text(shown, 80)} where DCP writes a {name}")
    return stub


def _mapping(value: Any) -> Mapping:
    if not isinstance(value, Mapping):
        raise _Malformed(f"a {type(value).__name__} where DCP writes a dict")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise _Malformed("a name that is not a short string")
    return value


def _size(value: Any) -> torch.Size:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and 0 <= v < 1 << 62 for v in value):
        raise _Malformed("a shape that is not a tuple of non-negative integers")
    return torch.Size(value)


def _path(value: Any) -> tuple:
    if not isinstance(value, tuple) or not value or not all(type(p) in (str, int) for p in value):
        raise _Malformed("a state-dict path that is not a tuple of names and indices")
    return value


def _check_shards(folder: Path, metadata: dcp_metadata.Metadata) -> None:
    """Every shard file the index names: a plain name inside the folder, a regular file, long enough,
    and no two values stored in the same bytes of it."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for info in metadata.storage_data.values():
        name = info.relative_path
        problem = file_name_problem(name)
        if problem is not None:
            raise CorruptCheckpointError(
                folder,
                f"{METADATA_NAME} names a shard file '{safe_text(name, 80)}' that {problem}",
                fix=DCP_FIX,
            )
        ranges.setdefault(name, []).append((info.offset, info.offset + info.length))
    for name, spans in sorted(ranges.items()):
        _check_shard_file(folder, name, max(end for _, end in spans))
        spans.sort()
        if any(start < previous_end for (_, previous_end), (start, _) in zip(spans, spans[1:], strict=False)):
            raise CorruptCheckpointError(
                folder, f"{METADATA_NAME} stores two values in the same bytes of shard file {safe_text(name, 80)}",
                expected="each value in its own bytes, as torch.distributed.checkpoint writes them", fix=DCP_FIX,
            )  # fmt: skip


def _check_shard_file(folder: Path, name: str, end: int) -> None:
    shown = safe_text(name, 80)
    try:
        found = os.stat(folder / name, follow_symlinks=False)
    except FileNotFoundError:
        raise CorruptCheckpointError(
            folder, f"shard file {shown} is missing (its {METADATA_NAME} names it)",
            expected="every shard file that was written with the checkpoint", fix=DCP_FIX,
        ) from None  # fmt: skip
    except (OSError, ValueError) as error:
        raise CorruptCheckpointError(
            folder, f"shard file {shown} cannot be read ({safe_text(getattr(error, 'strerror', None) or error, 120)})",
            fix=DCP_FIX,
        ) from None  # fmt: skip
    if not stat.S_ISREG(found.st_mode):
        raise CorruptCheckpointError(folder, f"shard {shown} is not a regular file", fix=DCP_FIX)
    if found.st_size < end:
        raise CorruptCheckpointError(
            folder,
            f"shard file {shown} is truncated ({found.st_size:,} bytes, {end:,} expected)",
            fix=DCP_FIX,
        )


def _check_values(folder: Path, metadata: dcp_metadata.Metadata) -> None:
    """Every size the index claims is backed by stored bytes, before anyone allocates it."""
    storage = metadata.storage_data
    for name, entry in metadata.state_dict_metadata.items():
        if isinstance(entry, dcp_metadata.TensorStorageMetadata):
            problem = _tensor_problem(name, entry, storage)
        else:
            info = storage.get(dcp_metadata.MetadataIndex(name))
            problem = "has no stored bytes" if info is None else None
            if info is not None and info.length > LIMITS.pickle_bytes:
                problem = (
                    f"is a pickled value of {info.length:,} bytes (at most {LIMITS.pickle_bytes:,} are read)"
                )
        if problem is not None:
            raise CorruptCheckpointError(
                folder, f"its {METADATA_NAME} says that {safe_text(name, 120)} {problem}",
                expected="values as torch.distributed.checkpoint writes them", fix=DCP_FIX,
            )  # fmt: skip


def _tensor_problem(name: str, entry: dcp_metadata.TensorStorageMetadata, storage: Mapping) -> str | None:
    """Why a tensor's chunks do not describe it (outside it, not covering it, or larger than their bytes)."""
    itemsize, elements = entry.properties.dtype.itemsize, 0
    for chunk in entry.chunks:
        if len(chunk.offsets) != len(entry.size) or len(chunk.sizes) != len(entry.size):
            return f"has a chunk of {len(chunk.sizes)} dimensions in a tensor of {len(entry.size)}"
        if any(o + s > n for o, s, n in zip(chunk.offsets, chunk.sizes, entry.size, strict=True)):
            return f"has a chunk at {list(chunk.offsets)} reaching past its size {list(entry.size)}"
        info = storage.get(dcp_metadata.MetadataIndex(name, chunk.offsets))
        count = math.prod(chunk.sizes)
        if info is None or count * itemsize > info.length:
            stored = "no" if info is None else f"{info.length:,}"
            return f"has a chunk of {count * itemsize:,} bytes stored in {stored} bytes"
        elements += count
    if elements != math.prod(entry.size):
        return f"has chunks of {elements:,} elements for a size of {math.prod(entry.size):,}"
    return None
