"""A ``torch.save`` file read through the boundary: its structure without tensors, tensors on demand.

``torch.load`` cannot be bounded: its unpickler walks whatever the pickle builds, and
with ``mmap=True`` a storage that declares more bytes than its zip member holds reads
the bytes of the members after it. So the engine reads torch files itself:

1. the zip's end record and directory come from :mod:`archive` (bounded);
2. ``<root>/data.pkl`` is unpickled by :mod:`safe_unpickle`'s budgeted, restricted
   virtual machine into plain values and :class:`TensorStub` s (no code runs, no tensor
   byte is read);
3. a tensor is materialised only when asked for, after its storage has been checked
   against its zip member (present, stored uncompressed, large enough, aligned): it is a
   view of one private, copy-on-write memory map of the file, so the optimizer state
   a caller never asks for is never read.

The pre-1.6 format (not a zip: several pickles one after another) is checked by the
same virtual machine and then read by ``torch.load(weights_only=True)``.

The reads' failures become errors naming the file in :mod:`torchfile_errors` (whose fixes and
``unsafe_error`` are importable from here too).
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from . import archive
from .errors import CheckpointError, CorruptCheckpointError
from .safe_unpickle import SparseTensorStub, TensorStub, load_structure, load_structure_at
from .text import first_line
from .torchfile_errors import (
    DAMAGED_FIX,
    INTERRUPTED_FIX,
    TRUST_FIX,
    describe_foreign,
    unpickle_call,
    unsafe_error,
    zip_call,
)
from .untrusted import LIMITS, UntrustedFile

__all__ = [
    "INTERRUPTED_FIX",
    "DAMAGED_FIX",
    "TorchFile",
    "unsafe_error",
]

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"  # the pre-1.6 format starts with a protocol-2 pickle


class TorchFile:
    """One torch file, open for bounded reading, on a handle from ``untrusted.open_untrusted``."""

    def __init__(self, handle: UntrustedFile) -> None:
        self.handle = handle
        self.path = handle.path
        head = handle.head(len(ZIP_MAGIC))
        self.is_zip = head == ZIP_MAGIC
        self.end: archive.EndRecord | None = None
        if self.is_zip:
            self.end = zip_call(self.path, lambda: archive.end_record(handle.file), truncated=True)
        elif not head.startswith(PICKLE_MAGIC):
            raise CorruptCheckpointError(self.path, describe_foreign(handle), fix=DAMAGED_FIX)
        self._entries: dict[str, archive.ZipEntry] | None = None
        self._structure: Any = _UNREAD
        self._legacy_object: Any = _UNREAD

    # -- the zip layout -------------------------------------------------------------------------

    @property
    def root(self) -> str:
        first = self.first_entry()
        return first.name.split("/", 1)[0] if first is not None else ""

    def first_entry(self) -> archive.ZipEntry | None:
        return zip_call(self.path, lambda: archive.first_entry(self.handle.file, self.end))

    def last_entry(self) -> archive.ZipEntry | None:
        return zip_call(self.path, lambda: archive.last_entry(self.handle.file, self.end))

    def entries(self) -> dict[str, archive.ZipEntry]:
        """Every member, by name (parsed once)."""
        if self._entries is None:
            self._entries = zip_call(self.path, lambda: archive.read_entries(self.handle.file, self.end))
        return self._entries

    def read_member(self, entry: archive.ZipEntry, max_bytes: int) -> bytes:
        return zip_call(
            self.path,
            lambda: archive.read_member(self.handle.file, entry, self.end.directory_offset, max_bytes),
        )

    # -- the pickled structure ------------------------------------------------------------------

    def structure(self) -> Any:
        """``data.pkl`` as plain values and tensor stubs (budgeted; no code runs)."""
        if self._structure is _UNREAD:
            self._structure = self._read_structure()
        return self._structure

    def _read_structure(self) -> Any:
        if not self.is_zip:
            data = self.handle.read_at(0, min(self.handle.size, LIMITS.pickle_bytes))
            return unpickle_call(self.path, lambda: _legacy_main_pickle(data))
        first = self.first_entry()
        if first is None or not first.name.endswith("/data.pkl") or first.name.count("/") != 1:
            raise CorruptCheckpointError(
                self.path,
                "is a zip archive, but not one written by torch.save (no data.pkl first)",
                expected="a PyTorch checkpoint",
                fix="pick a checkpoint written by save_checkpoint or torch.save",
            )
        data = self.read_member(first, LIMITS.pickle_bytes)
        return unpickle_call(self.path, lambda: load_structure(data))

    # -- tensors ----------------------------------------------------------------------------------

    def tensor(self, stub: TensorStub | SparseTensorStub, *, dense: bool = True) -> torch.Tensor:
        """The tensor a stub stands for: a view of the memory-mapped file.

        Args:
            dense: give a sparse tensor as a dense copy (for copying into a model's dense
                tensor); False keeps it sparse (a training state: densifying an optimizer's
                sparse state could take gigabytes).

        Raises:
            CorruptCheckpointError: its storage is missing, compressed, too small or misplaced.
        """
        if not self.is_zip:
            return self._legacy_tensor(stub)
        if isinstance(stub, SparseTensorStub):
            return self._sparse(stub, dense)
        if stub.opaque or stub.storage is None or stub.dtype is None:
            raise CorruptCheckpointError(
                self.path, f"holds a {stub.kind} tensor, which this reader cannot rebuild", fix=TRUST_FIX
            )
        storage = self._storage(stub)
        if stub.storage_extent > storage.numel():
            raise CorruptCheckpointError(
                self.path,
                f"a tensor of shape {list(stub.shape)} reaches past its storage "
                f"({stub.storage_extent:,} of {storage.numel():,} elements)",
                fix=DAMAGED_FIX,
            )
        view = storage.as_strided(tuple(stub.shape), tuple(stub.stride), stub.offset)
        # torch saves a lazily conjugated or negated view as its stored values plus a flag
        if "conj" in stub.math_bits:
            view = view.conj()
        return view.neg() if "neg" in stub.math_bits else view

    def _storage(self, stub: TensorStub) -> torch.Tensor:
        """The stub's whole storage as a 1-D tensor of the stub's dtype (a view of the map).

        The storage is sized in bytes: torch pickles tensors of the newer dtypes (float8,
        uint16, complex32, ...) with an untyped, byte-counted storage and the dtype beside it.
        """
        placeholder, dtype = stub.storage, stub.dtype
        name = f"{self.root}/data/{placeholder.key}"
        entry = self.entries().get(name)
        if entry is None:
            raise CorruptCheckpointError(
                self.path, f"names tensor data {name!r} that the archive lacks", fix=DAMAGED_FIX
            )
        if entry.method != zipfile.ZIP_STORED:
            raise CorruptCheckpointError(
                self.path, f"stores tensor data {name!r} compressed (torch.save never does)"
            )
        if placeholder.dtype not in (dtype, torch.uint8):
            raise CorruptCheckpointError(
                self.path,
                f"tensor data {name!r} is stored as {placeholder.dtype} but read as {dtype}",
                fix=DAMAGED_FIX,
            )
        needed = placeholder.nbytes
        if needed > entry.size:
            raise CorruptCheckpointError(
                self.path,
                f"tensor data {name!r} declares {needed:,} bytes but its member holds {entry.size:,}",
                fix=DAMAGED_FIX,
            )
        offset = zip_call(
            self.path, lambda: archive.member_data_offset(self.handle.file, entry, self.end.directory_offset)
        )
        count = needed // dtype.itemsize
        if count == 0:
            return torch.empty(0, dtype=dtype)
        if offset % dtype.itemsize:  # torch aligns to 64 bytes; a crafted offset gets an aligned copy
            raw = self.handle.read_at(offset, count * dtype.itemsize)
            return torch.frombuffer(bytearray(raw), dtype=dtype)
        try:
            return torch.frombuffer(self.handle.memory_map(), dtype=dtype, count=count, offset=offset)
        except (ValueError, RuntimeError, TypeError) as error:  # a dtype torch cannot view from bytes
            raise CorruptCheckpointError(
                self.path, f"tensor data {name!r} of dtype {dtype} cannot be read: {first_line(error)}"
            ) from error

    def damaged_storages(self, stubs: list[Any]) -> set[str]:
        """The storage keys among ``stubs`` whose member bytes fail their CRC-32 (read from the map).

        The members' places are found here, one after another (they read the open file);
        the checksums then run on every core at once (``zlib.crc32`` releases the GIL, and
        the map is only read).
        """
        keys = list(dict.fromkeys(p.key for stub in stubs for p in stub.storages()))
        spans = {key: self._member_span(key) for key in keys}
        with memoryview(self.handle.memory_map()) as view, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            intact = pool.map(lambda span: span is not None and zlib.crc32(view[span[0] : span[1]]) == span[2],
                              spans.values())  # fmt: skip
            return {key for key, ok in zip(spans, list(intact), strict=True) if not ok}

    def _member_span(self, key: str) -> tuple[int, int, int] | None:
        """(start, end, stored CRC-32) of a storage's member bytes; None when it is missing or compressed."""
        entry = self.entries().get(f"{self.root}/data/{key}")
        if entry is None or entry.method != zipfile.ZIP_STORED:
            return None
        start = zip_call(
            self.path, lambda: archive.member_data_offset(self.handle.file, entry, self.end.directory_offset)
        )
        return start, start + entry.size, entry.crc

    def _sparse(self, stub: SparseTensorStub, dense: bool) -> torch.Tensor:
        """A sparse tensor, validated as ``weights_only`` does (made dense when asked)."""
        parts = [self.tensor(part) for part in stub.components]
        size = tuple(stub.shape)
        try:
            if stub.layout == torch.sparse_coo and len(parts) == 2:
                torch._validate_sparse_coo_tensor_args(parts[0], parts[1], size)
                sparse = torch.sparse_coo_tensor(
                    parts[0], parts[1], size, check_invariants=False
                )  # checked above
                return sparse.to_dense() if dense else sparse
            if len(parts) == 3:
                torch._validate_sparse_compressed_tensor_args(*parts, size, stub.layout)
                sparse = torch.sparse_compressed_tensor(
                    *parts, size, layout=stub.layout, check_invariants=False
                )
                return sparse.to_dense() if dense else sparse
        except (RuntimeError, ValueError, TypeError) as error:
            raise CorruptCheckpointError(
                self.path, f"holds a sparse tensor that is not valid: {first_line(error)}"
            ) from error
        raise CorruptCheckpointError(
            self.path, f"holds a sparse tensor of layout {stub.layout} this reader cannot rebuild"
        )

    def scalar(self, stub: TensorStub) -> float | int | bool | None:
        """The value of a one-element tensor (a metric), reading at most a few bytes; None otherwise."""
        if not isinstance(stub, TensorStub) or stub.storage is None or stub.dtype is None:
            return None
        if (
            stub.storage.numel * stub.dtype.itemsize > LIMITS.scalar_bytes
            or stub.storage_extent > 1 + stub.offset
        ):
            return None
        try:
            value = self.tensor(stub)
            return value.reshape(-1)[0].item() if value.numel() == 1 else None
        except (CheckpointError, RuntimeError):
            return None

    def materialize(self, obj: Any, keep: Callable[[str], bool] | None = None) -> Any:
        """``obj`` (from :meth:`structure`) with every tensor stub replaced by its tensor.

        Args:
            keep: given a top-level key, whether to read its tensors (others keep their stubs).
        """
        if not self.is_zip:
            return self._legacy()
        if isinstance(obj, dict) and keep is not None:
            return {k: self._replace(v) if keep(k) else v for k, v in obj.items()}
        return self._replace(obj)

    def _replace(self, obj: Any) -> Any:
        # The structure is bounded by the unpickler's budget, so this walk is too.
        if isinstance(obj, TensorStub):
            return self.tensor(obj, dense=False)
        if isinstance(obj, dict):
            return type(obj)((k, self._replace(v)) for k, v in obj.items())
        if isinstance(obj, list):
            return [self._replace(v) for v in obj]
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            return tuple(self._replace(v) for v in obj)
        return obj

    # -- the pre-1.6 format -------------------------------------------------------------------------

    def _legacy(self) -> Any:
        if self._legacy_object is _UNREAD:
            self.structure()  # the budget check comes first
            self._legacy_object = _legacy_torch_load(self.path, self.handle)
        return self._legacy_object

    def _legacy_tensor(self, stub: Any) -> torch.Tensor:
        raise CorruptCheckpointError(self.path, "is in the pre-1.6 format: read it whole with materialize()")


_UNREAD = object()


def _legacy_main_pickle(data: bytes) -> Any:
    """The pre-1.6 format: magic number, protocol, system info, then the object itself."""
    offset = 0
    for _ in range(3):
        _, offset = load_structure_at(data, offset)
    return load_structure_at(data, offset)[0]


def _legacy_torch_load(path: Path, handle: UntrustedFile) -> Any:
    """``torch.load(weights_only=True)`` of a pre-1.6 file whose pickle passed the budget check."""
    handle.file.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(handle.file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise CorruptCheckpointError(
                path, f"cannot be read ({first_line(error)})", fix=DAMAGED_FIX
            ) from error
        except Exception as error:  # torch's reader fails in many ways on damaged bytes
            raise CorruptCheckpointError(
                path, f"cannot be read as a PyTorch checkpoint ({type(error).__name__})", fix=DAMAGED_FIX
            ) from error
