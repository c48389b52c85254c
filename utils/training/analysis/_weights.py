"""The one place the analysis reads checkpoint files: their weights, name -> memory-mapped tensor.

Everything in this package that needs a file's tensors (``layer_changes``, the epoch-start
weights of a resumed run) goes through :func:`open_checkpoint_weights`, so switching to the
engine's ``sources`` API (``WeightSet``: every supported checkpoint kind, tensors read lazily)
is a change to this module alone.

Reading a memory-mapped tensor maps its pages into the process. They are page cache, not
memory the process allocated, yet they count in its resident size until the file is closed:
streaming 20 GPT-2 files would leave 10 GB mapped. :meth:`CheckpointWeights.release` lets the
caller hand back the pages of a piece it has finished with (``madvise(MADV_DONTNEED)``; the
data stay in the page cache, and a later read maps them again from the file).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from utils.training.engine.errors import NotACheckpointError
from utils.training.engine.format import describe_object, model_state_of
from utils.training.engine.prefixes import strip_wrapper_prefixes
from utils.training.engine.reading import read_checkpoint_file
from utils.training.engine.tensor_checks import storage_key

__all__ = ["CheckpointWeights", "open_checkpoint_weights"]

_MADV_DONTNEED = 4  # Linux; the same value on every Linux architecture
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class CheckpointWeights(dict):
    """name -> tensor, and whether the tensors are views of a private read-only file mapping."""

    def __init__(self, tensors: dict[str, torch.Tensor], memory_mapped: bool) -> None:
        super().__init__(tensors)
        self.memory_mapped = memory_mapped

    def release(self, tensor: torch.Tensor, start: int, stop: int) -> None:
        """Unmap the whole pages of flat elements ``[start, stop)`` of one of these tensors.

        Only for tensors of a memory-mapped file (a page of a private file mapping that was never
        written is read again from the file if touched later); a no-op for tensors in ordinary
        memory, where dropping pages would zero them, and on systems other than Linux.
        """
        if not (
            self.memory_mapped
            and _LIBC is not None
            and tensor.is_contiguous()
            and tensor.device.type == "cpu"
        ):
            return
        size = tensor.element_size()
        first = tensor.data_ptr() + start * size
        last = tensor.data_ptr() + min(stop, tensor.numel()) * size
        first = -(-first // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the range only
        last = last // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


@contextlib.contextmanager
def open_checkpoint_weights(path: str | os.PathLike) -> Iterator[CheckpointWeights]:
    """The floating-point weights of a checkpoint, each tied tensor once, under clean names.

    Tensors are views of the memory-mapped file (zip-format files): touching one reads its pages
    from the page cache, and nothing is copied into private memory. The mapping is released
    when the ``with`` block ends.

    Args:
        path: a checkpoint file of any kind the engine's reader accepts (full, legacy, bare).

    Yields:
        name -> CPU tensor, in the file's order (``module.`` / ``_orig_mod.`` prefixes removed).

    Raises:
        CheckpointError: the reader's errors (missing, damaged, unsafe file).
        NotACheckpointError: a readable file without model weights.
    """
    path = Path(path)
    loaded = read_checkpoint_file(path)
    try:
        weights = model_state_of(loaded.obj)
        if weights is None:
            raise NotACheckpointError(
                path,
                f"holds {describe_object(loaded.obj)}, not model weights",
                expected="a checkpoint with 'model_state_dict', or a state_dict of tensors",
                fix="pick a checkpoint written by Cell 32 (Run Training), or save model.state_dict()",
            )
        renamed, _ = strip_wrapper_prefixes(weights)
        yield CheckpointWeights(_distinct_floats(renamed), loaded.mmap)
    finally:
        del loaded  # the last reference to the mapped storages: the file is unmapped


def _distinct_floats(weights) -> dict[str, torch.Tensor]:
    """Floating-point tensors only (no integer buffers), the first name of each tied tensor."""
    seen: set[tuple] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            continue
        key = storage_key(tensor)
        if key not in seen:
            seen.add(key)
            out[name] = tensor
    return out
