"""DCP's index (a folder's ``.metadata``), read without running code and checked against the folder.

``.metadata`` is a plain pickle of ``torch.distributed.checkpoint``'s ``Metadata``; DCP's own
reader hands it to ``pickle.load``. Here it goes through the engine's restricted, budgeted
unpickler (``safe_unpickle.read_dcp_metadata_structure``), which returns inert stubs; this
module rebuilds DCP's dataclasses from their checked plain values (names, shapes, dtypes,
offsets; anything else refuses the folder), then checks that every shard file the index
names is a plain name inside the folder, a regular file, and long enough. Only then does
DCP's reader (``dcp_reading``) see it.
"""

from __future__ import annotations

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
from .untrusted import read_small_file

__all__ = ["METADATA_NAME", "read_dcp_metadata", "tensor_entries"]

METADATA_NAME = ".metadata"
_MAX_METADATA_BYTES = 256 << 20  # DCP's index of a very large model is a few MB
_FIX = "use another checkpoint; this folder is incomplete or was not written by torch.distributed.checkpoint"


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
            folder, f"its {METADATA_NAME} is malformed ({error})", fix=_FIX
        ) from error
    _check_shards(folder, metadata)
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
        return read_small_file(folder / METADATA_NAME, _MAX_METADATA_BYTES)
    except CheckpointNotFoundError:
        raise CorruptCheckpointError(
            folder, f"has no {METADATA_NAME}: not a complete torch.distributed.checkpoint folder", fix=_FIX
        ) from None
    except CheckpointError as error:
        raise CorruptCheckpointError(folder, f"its {METADATA_NAME} {error.problem}", fix=_FIX) from error


def _structure(folder: Path, data: bytes) -> ObjectStub:
    try:
        return read_dcp_metadata_structure(data)
    except (RefusedGlobalError, RefusedOpcodeError) as error:
        raise UnsafeCheckpointError(
            folder, f"its {METADATA_NAME} {error}: reading it would run code from the file",
            fix="load only checkpoints from a source you trust; this one is refused",
        ) from error  # fmt: skip
    except BudgetExceededError as error:
        raise CorruptCheckpointError(folder, f"its {METADATA_NAME} is refused: {error}", fix=_FIX) from error
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as error:
        raise CorruptCheckpointError(folder, f"its {METADATA_NAME} is damaged ({error})", fix=_FIX) from error


def _rebuilt(stub: ObjectStub) -> dcp_metadata.Metadata:
    """DCP's ``Metadata`` from the unpickler's stub, every value checked on the way."""
    entries = {
        _text(name): _entry(value) for name, value in _mapping(stub.get("state_dict_metadata")).items()
    }
    paths = {_text(name): _path(value) for name, value in _mapping(stub.get("planner_data") or {}).items()}
    storage = {_index(key): _storage(value) for key, value in _mapping(stub.get("storage_data")).items()}
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
            f"shards stored with transforms {list(transforms)[:3]}, which this reader does not apply"
        )
    return _StorageInfo(_text(stub.get("relative_path")), offset, length)


def _is(stub: Any, name: str) -> bool:
    return isinstance(stub, ObjectStub) and stub.class_name == name


def _of(stub: Any, name: str) -> ObjectStub:
    if not _is(stub, name):
        shown = stub.class_name if isinstance(stub, ObjectStub) else type(stub).__name__
        raise _Malformed(f"a {shown} where DCP writes a {name}")
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
    if not isinstance(value, tuple) or not value or not all(isinstance(p, (str, int)) for p in value):
        raise _Malformed("a state-dict path that is not a tuple of names and indices")
    return value


def _check_shards(folder: Path, metadata: dcp_metadata.Metadata) -> None:
    """Every shard file the index names: a plain name inside the folder, a regular file, long enough."""
    needed: dict[str, int] = {}
    for info in metadata.storage_data.values():
        name = info.relative_path
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise CorruptCheckpointError(
                folder, f"{METADATA_NAME} names a shard outside the folder", fix=_FIX
            )
        needed[name] = max(needed.get(name, 0), info.offset + info.length)
    for name, end in sorted(needed.items()):
        try:
            found = os.stat(folder / name, follow_symlinks=False)
        except FileNotFoundError:
            raise CorruptCheckpointError(
                folder, f"shard file {name} is missing (its {METADATA_NAME} names it)",
                expected="every shard file that was written with the checkpoint", fix=_FIX,
            ) from None  # fmt: skip
        if not stat.S_ISREG(found.st_mode):
            raise CorruptCheckpointError(folder, f"shard {name} is not a regular file", fix=_FIX)
        if found.st_size < end:
            raise CorruptCheckpointError(
                folder,
                f"shard file {name} is truncated ({found.st_size:,} bytes, {end:,} expected)",
                fix=_FIX,
            )
