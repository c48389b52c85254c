"""Read a ``torch.distributed.checkpoint`` (DCP) folder safely, with or without a process group.

DCP's own ``FileSystemReader`` unpickles ``.metadata`` with ``pickle.load``, and its default
planner unpickles non-tensor values with ``weights_only=False``: a crafted folder would run
code. Here:

* :class:`SafeReader` hands DCP the index read and checked by ``dcp_index.read_dcp_metadata``
  (the engine's restricted unpickler; shard files checked) instead of unpickling it again;
* :class:`SafePlanner` reads non-tensor values with ``torch.load(weights_only=True)``.

Tensors are then read by DCP itself (its resharding included), into the tensors given.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader

from .dcp_index import read_dcp_metadata
from .errors import CorruptCheckpointError, UnsafeCheckpointError

__all__ = ["SafePlanner", "SafeReader", "load_dcp"]

_FIX = "use another checkpoint; this folder is incomplete or was not written by torch.distributed.checkpoint"


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
