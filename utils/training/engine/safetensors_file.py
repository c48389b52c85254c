"""A safetensors file read through the boundary: its header checked, tensors as views of a private map.

A safetensors file is an 8-byte little-endian header length, a JSON header (``name ->
{dtype, shape, data_offsets}`` and an optional ``__metadata__`` of strings), then the
raw bytes. The header is a file's claim, not a fact, so before any tensor is made:

* the header length is capped (:data:`HEADER_BYTES`, within :data:`LIMITS.header_bytes
  <untrusted.Limits>`) and must fit in the file; the length field itself is never shown (a
  file that is not safetensors, e.g. a symlinked text file, would print its first 8 bytes);
* the JSON is parsed only when its count of objects and arrays fits :data:`MAX_TENSORS`
  tensors (``untrusted.load_json``), with its failures (bad UTF-8, deep nesting) caught;
* every dtype must be one this reader knows, every shape a short list of small
  non-negative ints, and every byte range must lie inside the data section, hold
  exactly ``numel * itemsize`` bytes and share no byte with another tensor's.

Why not the ``safetensors`` library's ``safe_open``: it opens the path a second time by
name (not through the file descriptor the boundary checked), its ``get_tensor`` returns
a *copy* of each tensor (a 150 MB embedding for GPT-2 small: over the loader's memory
budget, where a view of the map costs nothing), and its failures are foreign
exceptions. This reader applies the same checks and then hands out views of one private,
copy-on-write map, like ``torchfile`` does for torch files, so the loader can transpose
while it copies. (Writing uses the library: ``hf_export``, ``notebook/export``.)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CorruptCheckpointError
from .text import json_type, safe_text
from .torchfile import DAMAGED_FIX
from .untrusted import LIMITS, UntrustedFile, load_json

__all__ = [
    "DTYPES",
    "HEADER_BYTES",
    "MAX_TENSORS",
    "SafetensorsEntry",
    "SafetensorsFile",
    "looks_like_safetensors",
]

# safetensors' dtype names -> torch dtypes (those this torch has)
DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, attribute)
    for name, attribute in (
        ("F64", "float64"),
        ("F32", "float32"),
        ("F16", "float16"),
        ("BF16", "bfloat16"),
        ("I64", "int64"),
        ("I32", "int32"),
        ("I16", "int16"),
        ("I8", "int8"),
        ("U8", "uint8"),
        ("U16", "uint16"),
        ("U32", "uint32"),
        ("U64", "uint64"),
        ("BOOL", "bool"),
        ("F8_E4M3", "float8_e4m3fn"),
        ("F8_E5M2", "float8_e5m2"),
    )
    if hasattr(torch, attribute)
}
_MAX_DIMS = 16  # a weight has 1-4; a header with more is not describing real tensors
_MAX_DIM_SIZE = 2**48
# GPT-2 xl has 580 tensors (a 60 KB header); the largest hub shards hold a few thousand. An entry is
# about 100 bytes and 3 containers (its object, shape and offsets).
MAX_TENSORS = 100_000
# MAX_TENSORS entries of ~120 bytes, with room for __metadata__; below LIMITS.header_bytes, so the
# values a header may hold (a float or short string costs ~10x its bytes once parsed) stay ~150 MB
HEADER_BYTES = 16 << 20
_CONTAINERS = 3 * MAX_TENSORS + 8
_REFUSED_FIX = (
    "do not use this file: no safetensors writer makes one like it (a crafted file, or not a safetensors "
    "file at all); export or download the model again from a source you trust"
)
_EXPECTED = "a complete safetensors file (8-byte header length, JSON header, tensor bytes)"


@dataclass(frozen=True)
class SafetensorsEntry:
    """One tensor of the header, checked: its bytes are ``[start, start + nbytes)`` of the file."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    nbytes: int


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """True when the first bytes are a plausible header length followed by ``{`` (cheap; no parsing)."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= size - 8


class SafetensorsFile:
    """One safetensors file open through the boundary, its header validated on construction.

    Raises:
        CorruptCheckpointError: the header is over the cap, cut short, not JSON, or describes
            tensors that do not fit the file (offsets outside it, sizes that disagree, an
            unknown dtype).
    """

    def __init__(self, handle: UntrustedFile) -> None:
        self.handle = handle
        self.path = Path(handle.path)
        header, self.data_start = _read_header(handle)
        data_size = handle.size - self.data_start
        self.metadata = _metadata(header.pop("__metadata__", None))
        if len(header) > MAX_TENSORS:
            raise _refused(
                self.path, f"refused: its header describes {len(header):,} tensors, more than {MAX_TENSORS:,}"
            )
        self.entries: dict[str, SafetensorsEntry] = {
            name: _entry(self.path, name, value, data_size, self.data_start) for name, value in header.items()
        }
        _check_disjoint(self.path, self.entries)

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor ``name`` as a view of the memory-mapped file (an aligned copy if misaligned)."""
        entry = self.entries[name]
        itemsize = entry.dtype.itemsize
        count = entry.nbytes // itemsize
        if count == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        if entry.start % itemsize:  # the library pads headers to 8 bytes; a crafted file may not
            raw = bytearray(self.handle.read_at(entry.start, entry.nbytes))
            return torch.frombuffer(raw, dtype=entry.dtype).view(entry.shape)
        flat = torch.frombuffer(self.handle.memory_map(), dtype=entry.dtype, count=count, offset=entry.start)
        return flat.view(entry.shape)


def _damaged(path: Path, problem: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(path, problem, expected=_EXPECTED, fix=DAMAGED_FIX)


def _refused(path: Path, problem: str) -> CorruptCheckpointError:
    """A header no safetensors writer makes (far over what a model needs): not damage to re-download."""
    expected = f"{_EXPECTED}, of at most {MAX_TENSORS:,} tensors"
    return CorruptCheckpointError(path, problem, expected=expected, fix=_REFUSED_FIX)


def _read_header(handle: UntrustedFile) -> tuple[dict[str, Any], int]:
    path = Path(handle.path)
    if handle.size < 8:
        raise _damaged(path, f"is too short for a safetensors file ({handle.size} bytes)")
    # The length field is the file's first 8 bytes: never echoed (they may be anything's bytes).
    length, cap = int.from_bytes(handle.read_at(0, 8), "little"), min(LIMITS.header_bytes, HEADER_BYTES)
    if length > cap:
        raise _refused(
            path,
            f"refused: its header length is implausible for a {handle.size:,}-byte file "
            f"(a safetensors header here may have at most {cap:,} bytes)",
        )
    if 8 + length > handle.size:
        raise _damaged(
            path,
            f"is truncated: its header is longer than the file's {handle.size:,} bytes "
            "(the download or copy was cut short?)",
        )
    try:
        header = load_json(handle.read_at(8, length), _CONTAINERS)
    except ValueError as error:  # UnicodeDecodeError and json's errors included
        if str(error).startswith("refused:"):  # over the budget or too deep: never parsed
            reason = str(error).removeprefix("refused: ")
            raise _refused(
                path,
                f"refused: its safetensors header is not parsed: {reason}",
            ) from None
        raise _damaged(path, "has a safetensors header that is not valid JSON") from None
    if not isinstance(header, dict):
        raise _damaged(path, f"has a safetensors header that is a JSON {json_type(header)}, not an object")
    return header, 8 + length


def _metadata(raw: Any) -> dict[str, str]:
    """The header's ``__metadata__``: string pairs only (anything else is dropped)."""
    if not isinstance(raw, Mapping):
        return {}
    return {key: value for key, value in raw.items() if isinstance(key, str) and isinstance(value, str)}


def _entry(path: Path, name: str, value: Any, data_size: int, data_start: int) -> SafetensorsEntry:
    """One header entry, checked against the file; a claim that does not fit raises."""
    shown = safe_text(name, 80)
    if not isinstance(value, Mapping):
        raise _damaged(path, f"describes tensor {shown!r} with a JSON {type(value).__name__}, not an object")
    dtype = DTYPES.get(value.get("dtype")) if isinstance(value.get("dtype"), str) else None
    if dtype is None:
        raise _damaged(
            path,
            f"stores tensor {shown!r} as dtype {safe_text(value.get('dtype'), 20)!r}, which this reader "
            f"does not know (known: {', '.join(DTYPES)})",
        )
    shape, offsets = value.get("shape"), value.get("data_offsets")
    if not _ints(shape, _MAX_DIMS, _MAX_DIM_SIZE):
        raise _damaged(path, f"gives tensor {shown!r} a shape that is not a list of sizes")
    if not _ints(offsets, 2, data_size) or len(offsets) != 2 or offsets[0] > offsets[1]:
        raise _damaged(
            path,
            f"places tensor {shown!r} at bytes {safe_text(offsets, 60)}, outside the file's "
            f"{data_size:,} bytes of tensor data (the header lies about its offsets)",
        )
    numel = 1
    for size in shape:
        numel *= size
    nbytes = offsets[1] - offsets[0]
    if numel * dtype.itemsize != nbytes:
        raise _damaged(
            path,
            f"gives tensor {shown!r} of shape {list(shape)} ({numel * dtype.itemsize:,} bytes) "
            f"a byte range of {nbytes:,} bytes",
        )
    return SafetensorsEntry(dtype, tuple(shape), data_start + offsets[0], nbytes)


def _check_disjoint(path: Path, entries: Mapping[str, SafetensorsEntry]) -> None:
    """Refuse two tensors sharing bytes: every writer lays them end to end (the safetensors library
    refuses such a file too), and aliased tensors would change together."""
    spans = sorted(
        (entry.start, entry.start + entry.nbytes, name) for name, entry in entries.items() if entry.nbytes
    )
    # sorted by start: if any two ranges overlap, some neighbouring pair does
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise _damaged(
                path,
                f"places tensors {safe_text(first, 80)!r} and {safe_text(second, 80)!r} on the same bytes "
                "(the header lies about its offsets)",
            )


def _ints(value: Any, max_len: int, max_value: int) -> bool:
    """A list of at most ``max_len`` ints in ``[0, max_value]`` (bools are not sizes)."""
    return (
        isinstance(value, list)
        and len(value) <= max_len
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= max_value for v in value)
    )
