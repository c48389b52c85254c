"""The one place the analysis reads checkpoint files: their weights, name -> memory-mapped tensor.

Everything in this package that needs a file's tensors (``layer_changes``, the epoch-start
weights of a resumed run) goes through :func:`open_checkpoint_weights`, which reads through
the engine's ``sources`` (``open_checkpoint(path).weights()``): every checkpoint kind the
engine knows (ours, nanoGPT, Lightning, Hugging Face, safetensors, DCP and sharded folders)
works, under our model's names, each tensor a view of the memory-mapped file.

Reading a memory-mapped tensor maps its pages into the process. They are page cache, not
memory the process allocated, yet they count in its resident size until the file is closed:
streaming 20 GPT-2 files would leave 10 GB mapped. :meth:`CheckpointWeights.release` lets the
caller hand back the pages of a piece it has finished with (``madvise(MADV_DONTNEED)``), and
only pages of a private mapping of that very file: the data stay in the page cache, and a
later read maps them again from the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from utils.training.engine.prefixes import strip_wrapper_prefixes
from utils.training.engine.sources import WeightSet, open_checkpoint

__all__ = ["CheckpointWeights", "open_checkpoint_weights"]

_MADV_DONTNEED = 4  # Linux; the same value on every Linux architecture
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class CheckpointWeights(Mapping):
    """name -> tensor (read on first access, then kept: a view costs nothing until touched).

    Args:
        weights: the source's weight set, open for the lifetime of this object.
        names: our name -> the set's name, floating-point tensors only, each tied tensor once.
        path: the file the tensors map (to find the mapping whose pages may be released).
    """

    def __init__(self, weights: WeightSet, names: Mapping[str, str], path: Path | None = None) -> None:
        self._weights = weights
        self._names = dict(names)
        self._cache: dict[str, torch.Tensor] = {}
        self._file = os.path.realpath(path) if path is not None else None
        self._mapped: list[tuple[int, int]] | None = None  # address ranges of the file's mappings

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            self._cache[name] = self._weights.tensor(self._names[name])
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, from the file's metadata (no data read)."""
        return tuple(self._weights.spec(self._names[name]).shape)

    def release(self, tensor: torch.Tensor, start: int, stop: int) -> None:
        """Unmap the whole pages of flat elements ``[start, stop)`` of one of these tensors.

        Only pages inside a private mapping of this checkpoint's file (never written to: a later
        read maps them again from the file); a no-op for anything else (a tensor copied into
        ordinary memory, where dropping pages would zero it), and on systems other than Linux.
        """
        if _LIBC is None or self._file is None or not tensor.is_contiguous() or tensor.device.type != "cpu":
            return
        size = tensor.element_size()
        first = -(-(tensor.data_ptr() + start * size) // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages only
        last = (tensor.data_ptr() + min(stop, tensor.numel()) * size) // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first and any(low <= first and last <= high for low, high in self._file_mappings()):
            _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)

    def _file_mappings(self) -> list[tuple[int, int]]:
        """The address ranges where this process maps the file privately (read once, after the first
        tensor was read: the source maps the file lazily)."""
        if self._mapped is None:
            self._mapped = _private_mappings_of(self._file)
        return self._mapped


def _private_mappings_of(file: str) -> list[tuple[int, int]]:
    ranges = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].rstrip("\n") == file and fields[1].endswith("p"):
                    low, high = (int(part, 16) for part in fields[0].split("-"))
                    ranges.append((low, high))
    except OSError:
        return []
    return ranges


@contextlib.contextmanager
def open_checkpoint_weights(path: str | os.PathLike) -> Iterator[CheckpointWeights]:
    """The floating-point weights of a checkpoint, each tied tensor once, under clean names.

    Args:
        path: a checkpoint file or folder of any kind the engine's sources read.

    Yields:
        name -> CPU tensor, in the file's order (``module.`` / ``_orig_mod.`` prefixes removed);
        the file stays open (mapped) until the ``with`` block ends.

    Raises:
        CheckpointError: the sources' errors (missing, damaged, unsafe, not a checkpoint).
    """
    path = Path(path)
    with open_checkpoint(path) as checkpoint, checkpoint.weights() as weights:
        yield CheckpointWeights(weights, _distinct_float_names(weights), path)


def _distinct_float_names(weights: WeightSet) -> dict[str, str]:
    """Clean name -> the set's name: floating-point tensors (no integer buffers), the first name
    of each tied tensor, tensors the reader can rebuild."""
    seen: set = set()
    kept: dict[str, str] = {}
    for name, spec in weights.specs().items():
        key = weights.storage_key(name)
        if (
            spec.problem is None
            and spec.dtype is not None
            and spec.dtype.is_floating_point
            and key not in seen
        ):
            seen.add(key)
            kept[name] = name
    renamed, _ = strip_wrapper_prefixes(kept)
    return renamed
