"""Read a ``torch.distributed.checkpoint`` (DCP) folder safely, with or without a process group.

DCP's own ``FileSystemReader`` unpickles ``.metadata`` with ``pickle.load``, and its default
planner unpickles non-tensor values with ``weights_only=False``: a crafted folder would run
code. Here:

* :class:`SafeReader` hands DCP the index read and checked by ``dcp_index.read_dcp_metadata``
  (the engine's restricted unpickler; shard files checked) instead of unpickling it again;
* :class:`SafePlanner` reads non-tensor values (the bytes of a ``torch.save``) with the
  engine's own reader (``torch_parts.parse_torch_bytes``: the budgeted, restricted
  unpickler; ``torch.load``, even with ``weights_only=True``, builds any bytearray a
  pickle asks for).

Tensors are then read by DCP itself (its resharding included), into the tensors given.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader

from .dcp_index import DCP_FIX, DCP_REFUSED_FIX, read_dcp_metadata
from .errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError
from .text import safe_text
from .torch_parts import parse_torch_bytes

__all__ = ["SafePlanner", "SafeReader", "load_dcp"]


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
    """DCP's default load planner, except that non-tensor values are read by the engine's reader."""

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._folder = folder

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            obj = parse_torch_bytes(value.getbuffer(), self._folder)
        except CheckpointError as error:
            unsafe = isinstance(error, UnsafeCheckpointError)
            kind = UnsafeCheckpointError if unsafe else CorruptCheckpointError
            problem = f"its value {safe_text(fqn, 120)} {error.problem}"
            raise kind(self._folder, problem, fix=DCP_REFUSED_FIX if unsafe else DCP_FIX) from error
        if self.flatten_state_dict:
            from torch.distributed.checkpoint._nested_dict import set_element

            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


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
    planner = SafePlanner(folder, allow_partial_load=partial)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
            dcp.load(state_dict, storage_reader=reader, planner=planner, no_dist=no_dist)
    except (Exception, dcp.api.CheckpointException) as error:  # CheckpointException is a BaseException
        inner = _inner(error)
        if isinstance(inner, CheckpointError):  # ours, raised inside DCP's reader (a value refused)
            raise type(inner)(folder, inner.problem, expected=inner.expected, fix=inner.fix) from error
        first = str(inner).splitlines()[0] if str(inner) else ""
        reason = safe_text(f"{type(inner).__name__}: {first}", 300)
        raise CorruptCheckpointError(
            folder, f"cannot be read by torch.distributed.checkpoint ({reason})", fix=DCP_FIX
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
