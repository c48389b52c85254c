"""Read a ``torch.distributed.checkpoint`` (DCP) folder safely, with or without a process group.

A DCP folder holds ``.metadata`` (a plain pickle of DCP's ``Metadata``) and shard files
(``*.distcp``). DCP's own ``FileSystemReader`` calls ``pickle.load`` on ``.metadata``
and its default planner unpickles non-tensor values with ``weights_only=False``: a
crafted folder would run code. Here:

* ``.metadata`` is read as a regular file with a byte cap and unpickled by a restricted
  unpickler that knows only DCP's metadata dataclasses, ``torch.Size``, dtypes and
  layouts (anything else is refused before it is called); the result is checked
  (every shard file it names exists, is a plain name inside the folder and is long
  enough) before DCP sees it;
* :class:`SafeReader` hands DCP that checked metadata instead of unpickling again;
* :class:`SafePlanner` reads non-tensor values with ``torch.load(weights_only=True)``.

Tensors are then read by DCP itself (its resharding included), into the tensors given.
"""

from __future__ import annotations

import io
import os
import pickle
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader, _StorageInfo

from .errors import CheckpointError, CheckpointNotFoundError, CorruptCheckpointError, UnsafeCheckpointError
from .untrusted import read_small_file

__all__ = ["SafePlanner", "SafeReader", "load_dcp", "read_dcp_metadata", "tensor_entries"]

METADATA_NAME = ".metadata"
_MAX_METADATA_BYTES = 256 << 20  # DCP's index of a very large model is a few MB
_DCP_CLASSES = {
    "Metadata", "TensorStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
    "BytesStorageMetadata", "StorageMeta", "MetadataIndex", "_MEM_FORMAT_ENCODING",
}  # fmt: skip
_FIX = "use another checkpoint; this folder is incomplete or was not written by torch.distributed.checkpoint"


class _MetadataUnpickler(pickle.Unpickler):
    """Only the inert types a DCP ``.metadata`` pickle needs; paths become plain strings."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch.distributed.checkpoint.metadata" and name in _DCP_CLASSES:
            return getattr(dcp_metadata, name)
        if module == "torch.distributed.checkpoint.filesystem" and name == "_StorageInfo":
            return _StorageInfo
        if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
            return getattr(torch, name)
        if module == "torch.serialization" and name == "_get_layout":
            return _layout
        if module == "pathlib" and name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"):
            return _path_text
        if module == "collections" and name == "OrderedDict":
            return dict
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which a DCP metadata file never needs")


def _layout(name: str) -> torch.layout:
    layout = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(layout, torch.layout):
        raise pickle.UnpicklingError(f"unknown tensor layout {name!r:.40}")
    return layout


def _path_text(*parts: Any) -> str:
    return "/".join(str(part) for part in parts)


def read_dcp_metadata(folder: str | os.PathLike) -> dcp_metadata.Metadata:
    """DCP's index of ``folder``, unpickled safely and checked against the files present.

    Raises:
        CorruptCheckpointError: no ``.metadata``, a damaged one, or a shard file it names
            that is missing or too short (the message names the file).
        UnsafeCheckpointError: the pickle refers to anything but DCP's metadata types.
    """
    folder = Path(folder)
    data = _read_capped(folder / METADATA_NAME, folder)
    try:
        metadata = _MetadataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as error:
        if "never needs" in str(error):
            raise UnsafeCheckpointError(
                folder, f"its {METADATA_NAME} {error}: reading it would run code from the file",
                fix="load only checkpoints from a source you trust; this one is refused",
            ) from error  # fmt: skip
        raise CorruptCheckpointError(folder, f"its {METADATA_NAME} is damaged ({error})", fix=_FIX) from error
    except Exception as error:  # any damage in foreign bytes becomes one clear error
        raise CorruptCheckpointError(
            folder, f"its {METADATA_NAME} is damaged ({error!r:.200})", fix=_FIX
        ) from error
    _check(folder, metadata)
    return metadata


def _read_capped(path: Path, folder: Path) -> bytes:
    """The bytes of ``.metadata`` through the reading boundary (a regular file, never a FIFO; capped)."""
    try:
        return read_small_file(path, _MAX_METADATA_BYTES)
    except CheckpointNotFoundError:
        raise CorruptCheckpointError(
            folder, f"has no {METADATA_NAME}: not a complete torch.distributed.checkpoint folder", fix=_FIX
        ) from None
    except CheckpointError as error:
        raise CorruptCheckpointError(folder, f"its {METADATA_NAME} {error.problem}", fix=_FIX) from error


def _check(folder: Path, metadata: Any) -> None:
    """Raise unless ``metadata`` is DCP's index and every shard file it names is there and long enough."""
    if not isinstance(metadata, dcp_metadata.Metadata) or not isinstance(metadata.state_dict_metadata, dict):
        raise CorruptCheckpointError(folder, f"{METADATA_NAME} holds no DCP index", fix=_FIX)
    storage = metadata.storage_data
    if not isinstance(storage, dict):
        raise CorruptCheckpointError(folder, f"{METADATA_NAME} names no shard files", fix=_FIX)
    needed: dict[str, int] = {}
    for info in storage.values():
        if not isinstance(info, _StorageInfo) or not _plain_name(info.relative_path):
            raise CorruptCheckpointError(
                folder, f"{METADATA_NAME} names a shard outside the folder", fix=_FIX
            )
        if info.transform_descriptors:
            raise CorruptCheckpointError(
                folder, f"its shards are stored with transforms {list(info.transform_descriptors)}",
                expected="shards written by DCP's FileSystemWriter without extensions", fix=_FIX,
            )  # fmt: skip
        if type(info.offset) is not int or type(info.length) is not int or min(info.offset, info.length) < 0:
            raise CorruptCheckpointError(folder, f"{METADATA_NAME} has a bad shard offset", fix=_FIX)
        end = info.offset + info.length
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), end)
    for name, end in sorted(needed.items()):
        _check_shard(folder, name, end)


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _check_shard(folder: Path, name: str, end: int) -> None:
    try:
        info = os.stat(folder / name, follow_symlinks=False)
    except FileNotFoundError:
        raise CorruptCheckpointError(
            folder, f"shard file {name} is missing (its {METADATA_NAME} names it)",
            expected="every shard file that was written with the checkpoint", fix=_FIX,
        ) from None  # fmt: skip
    if not stat.S_ISREG(info.st_mode):
        raise CorruptCheckpointError(folder, f"shard {name} is not a regular file", fix=_FIX)
    if info.st_size < end:
        raise CorruptCheckpointError(
            folder, f"shard file {name} is truncated ({info.st_size:,} bytes, {end:,} expected)", fix=_FIX
        )


def tensor_entries(metadata: dcp_metadata.Metadata) -> dict[str, dcp_metadata.TensorStorageMetadata]:
    """The tensors the checkpoint holds (DCP's flattened names -> size and dtype), in its order."""
    return {
        name: entry
        for name, entry in metadata.state_dict_metadata.items()
        if isinstance(entry, dcp_metadata.TensorStorageMetadata)
    }


class SafeReader(FileSystemReader):
    """DCP's file reader, given metadata already read by :func:`read_dcp_metadata`."""

    def __init__(self, folder: str | os.PathLike, metadata: dcp_metadata.Metadata | None = None) -> None:
        super().__init__(folder)
        self._checked = metadata if metadata is not None else read_dcp_metadata(folder)

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        if self._checked.storage_meta is None:
            self._checked.storage_meta = dcp_metadata.StorageMeta()
        self._checked.storage_meta.load_id = self.load_id
        return self._checked


class SafePlanner(DefaultLoadPlanner):
    """DCP's default load planner, except that non-tensor values load with ``weights_only=True``."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        try:
            obj = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpointError(
                None, f"a value stored as {read_item.dest_index.fqn!r} needs arbitrary unpickling ({error})",
                fix="load only checkpoints from a source you trust; this one is refused",
            ) from error  # fmt: skip
        if self.flatten_state_dict:
            from torch.distributed.checkpoint._nested_dict import set_element

            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


def load_dcp(
    folder: str | os.PathLike,
    state_dict: dict[str, Any],
    *,
    metadata: dcp_metadata.Metadata | None = None,
    no_dist: bool = False,
    partial: bool = False,
) -> None:
    """Fill ``state_dict`` (tensors allocated by the caller, sharded or not) from a DCP folder.

    Args:
        folder: the DCP folder.
        state_dict: what to read; DCP reshards into whatever the tensors are (DTensor shards,
            full tensors) and replaces non-tensor values.
        metadata: from :func:`read_dcp_metadata`, when already read.
        no_dist: read in this process alone (no process group, or without using it).
        partial: allow keys of ``state_dict`` that the checkpoint lacks (left as they are).

    Raises:
        CorruptCheckpointError: a shard cannot be read, or a key is missing (the message says which).
        UnsafeCheckpointError: a value would need arbitrary unpickling.
    """
    folder = Path(folder)
    reader = SafeReader(folder, metadata)
    planner = SafePlanner(allow_partial_load=partial)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
            dcp.load(state_dict, storage_reader=reader, planner=planner, no_dist=no_dist)
    except (Exception, dcp.api.CheckpointException) as error:  # CheckpointException is a BaseException
        inner = _inner(error)
        if isinstance(inner, UnsafeCheckpointError):
            raise UnsafeCheckpointError(folder, inner.problem, fix=inner.fix) from error
        reason = f"{type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}"[:300]
        raise CorruptCheckpointError(
            folder, f"cannot be read by torch.distributed.checkpoint ({reason})", fix=_FIX
        ) from error


def _inner(error: BaseException) -> BaseException:
    """The first rank's exception inside DCP's CheckpointException (which wraps every failure)."""
    failures = getattr(error, "failures", None)
    if isinstance(failures, Mapping) and failures:
        first = next(iter(failures.values()))
        inner = first[0] if isinstance(first, tuple) else first
        if isinstance(inner, BaseException):
            return inner
    return error
