"""Small ``torch.save`` pickles read through the engine's reader, never by ``torch.load``.

A sharded checkpoint folder holds small torch files (``train_state.pt``, one
``rank_NNNNN.pt`` per process), and DCP stores every non-tensor value (an optimizer's
learning rate, its parameter names) as the bytes of a ``torch.save``. ``torch.load``
cannot read either within bounds, even with ``weights_only=True``: its allowlist holds
``builtins.bytearray``, so 420 crafted bytes ask for gigabytes. Here both go through
:class:`torchfile.TorchFile`: ``data.pkl`` by the budgeted, restricted unpickler, every
tensor checked against its zip member, then copied out of it (the file is closed when the
call returns), the copies bounded by :data:`LIMITS.pickle_bytes` in all.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from .errors import CorruptCheckpointError
from .safe_unpickle import SparseTensorStub, TensorStub
from .torchfile import DAMAGED_FIX, TorchFile
from .untrusted import LIMITS, UntrustedFile, open_untrusted

__all__ = ["parse_torch_bytes", "read_torch_part"]


def read_torch_part(path: str | os.PathLike, max_bytes: int = LIMITS.pickle_bytes) -> Any:
    """The object a small torch file holds, its tensors copied out of the file.

    Args:
        path: the file.
        max_bytes: the most bytes the file may have (it is a part, never a model's weights).

    Raises:
        CheckpointNotFoundError: missing.
        CorruptCheckpointError: too large, damaged, not a zip written by ``torch.save``, over the
            unpickler's budget, or tensors of more than ``LIMITS.pickle_bytes`` in all.
        UnsafeCheckpointError: the pickle needs a global outside the allowlist.
        CheckpointError: any other refusal of the reading boundary (a FIFO, a device).
    """
    with open_untrusted(path) as handle:
        if handle.size > max_bytes:
            raise CorruptCheckpointError(
                path, f"refused: {handle.size:,} bytes, more than the {max_bytes:,} such a file may have"
            )
        return _OwnedTensors(handle).everything()


def parse_torch_bytes(data: bytes | bytearray | memoryview, path: str | os.PathLike | None) -> Any:
    """The object in the bytes of a ``torch.save`` (DCP's pickled values), read like a file.

    Args:
        data: the bytes (already in memory: the caller bounded their length).
        path: the file they came from, for messages.

    Raises:
        CorruptCheckpointError, UnsafeCheckpointError: as :func:`read_torch_part`.
    """
    handle = _MemoryFile(Path(path) if path is not None else Path("<bytes>"), bytearray(data))
    try:
        return _OwnedTensors(handle).everything()
    finally:
        handle.close()


class _OwnedTensors(TorchFile):
    """A torch file whose tensors are copies (the views of its map end with the file), within a budget."""

    def __init__(self, handle: UntrustedFile) -> None:
        if handle.size == 0:
            raise CorruptCheckpointError(handle.path, "is empty (0 bytes)", fix=DAMAGED_FIX)
        super().__init__(handle)
        self._bytes_left = LIMITS.pickle_bytes

    def everything(self) -> Any:
        if not self.is_zip:  # the pre-1.6 format would go to torch.load; torch.save has not written it since
            raise CorruptCheckpointError(
                self.path, "is not a zip written by torch.save (the pre-1.6 format is not read here)",
                fix=DAMAGED_FIX,
            )  # fmt: skip
        return self.materialize(self.structure())

    def tensor(self, stub: TensorStub | SparseTensorStub, *, dense: bool = True) -> torch.Tensor:
        if isinstance(stub, SparseTensorStub):  # never in a part or a DCP value; its dense form is unbounded
            raise CorruptCheckpointError(self.path, "holds a sparse tensor, which such a file never does")
        view = super().tensor(stub, dense=dense)
        self._bytes_left -= view.numel() * view.element_size()
        if self._bytes_left < 0:
            raise CorruptCheckpointError(
                self.path,
                f"refused: its tensors take more than {LIMITS.pickle_bytes:,} bytes",
                fix=DAMAGED_FIX,
            )
        return view.clone()


class _MemoryFile(UntrustedFile):
    """Bytes already in memory, read as the boundary reads a file."""

    def __init__(self, path: Path, data: bytearray) -> None:
        super().__init__(path, io.BytesIO(data), len(data), None)
        self._data = data

    def memory_map(self) -> bytearray:  # type: ignore[override]  (a buffer, as a map is)
        return self._data

    def close(self) -> None:
        self.file.close()
