"""Read the structure of a torch ``data.pkl`` without its tensors and without running code.

The listing needs the epoch, step and metrics of files that carry no JSON
record (legacy files, bare ``state_dict`` files, files from other tools).
Those values live in the archive's ``data.pkl``. This module unpickles it
with a closed list of allowed globals, each mapped to a harmless stand-in:

* tensors become :class:`TensorStub` (dtype, shape, storage key), and no
  storage bytes are read (``persistent_load`` returns a placeholder);
* ``OrderedDict``, ``set``, ``complex``, ``torch.Size`` and dtypes are the real,
  inert types;
* anything else (a class, ``os.system``, ``numpy`` objects, ...) raises
  :class:`RefusedGlobalError` before it is called, so a pickle that would run
  code is never executed.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["RefusedGlobalError", "StoragePlaceholder", "TensorStub", "load_structure"]


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle refers to a global outside the allowlist (it would need arbitrary unpickling)."""

    def __init__(self, module: str, name: str) -> None:
        self.qualified_name = f"{module}.{name}"
        super().__init__(f"refers to {self.qualified_name}, which a safe reader does not run")


@dataclass(frozen=True)
class StoragePlaceholder:
    """Stands for a tensor storage: its dtype, its member key in ``<root>/data/`` and its length."""

    dtype: torch.dtype | None
    key: str
    numel: int


@dataclass(frozen=True)
class TensorStub:
    """Stands for a tensor whose bytes were not read."""

    dtype: torch.dtype | None = None
    shape: tuple[int, ...] | None = None
    storage: StoragePlaceholder | None = None
    offset: int = 0

    @property
    def numel(self) -> int | None:
        if self.shape is None:
            return None
        count = 1
        for size in self.shape:
            count *= int(size)
        return count


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype | None


_STORAGE_DTYPES = {
    "Double": torch.float64,
    "Float": torch.float32,
    "Half": torch.float16,
    "BFloat16": torch.bfloat16,
    "Long": torch.int64,
    "Int": torch.int32,
    "Short": torch.int16,
    "Char": torch.int8,
    "Byte": torch.uint8,
    "Bool": torch.bool,
    "ComplexFloat": torch.complex64,
    "ComplexDouble": torch.complex128,
}


def _rebuild_tensor(storage, storage_offset=0, size=None, *_rest, **_kw) -> TensorStub:
    storage = storage if isinstance(storage, StoragePlaceholder) else None
    shape = tuple(int(s) for s in size) if size is not None else None
    return TensorStub(storage.dtype if storage else None, shape, storage, int(storage_offset or 0))


def _first_argument(data=None, *_rest, **_kw):
    """``_rebuild_parameter(data, requires_grad, hooks)``: the parameter is its data."""
    return data


def _rebuild_from_type_v2(func, _new_type, args, _state):
    return func(*args)


def _opaque_tensor(*_args, **_kw) -> TensorStub:
    """Sparse, quantized, meta or wrapper tensors: listed as 'a tensor', nothing more."""
    return TensorStub()


def _device(*args) -> str:
    return ":".join(str(a) for a in args)


_REBUILDERS = {
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_tensor_v2": _rebuild_tensor,
    "_rebuild_tensor_v3": _rebuild_tensor,
    "_rebuild_parameter": _first_argument,
    "_rebuild_parameter_with_state": _first_argument,
}
_OPAQUE = (
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
    "_rebuild_nested_tensor",
    "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_device_tensor_from_numpy",
)
_BUILTINS = {"set": set, "frozenset": frozenset, "complex": complex, "bytearray": bytearray, "slice": slice}


def _allowed_global(module: str, name: str) -> Any:
    """The stand-in for ``module.name``; raises RefusedGlobalError when it is not allowed."""
    if module == "torch._utils":
        if name in _REBUILDERS:
            return _REBUILDERS[name]
        if name in _OPAQUE:
            return _opaque_tensor
    elif module == "torch._tensor" and name == "_rebuild_from_type_v2":
        return _rebuild_from_type_v2
    elif module in ("torch", "torch.cuda", "torch.storage"):
        return _torch_global(module, name)
    elif module == "collections" and name in ("OrderedDict", "Counter"):
        return getattr(collections, name)
    elif module in ("builtins", "__builtin__") and name in _BUILTINS:
        return _BUILTINS[name]
    elif module == "_codecs" and name == "encode":
        return _latin1_encode
    elif module == "torch.nn.parameter" and name == "Parameter":
        return _first_argument
    raise RefusedGlobalError(module, name)


def _torch_global(module: str, name: str) -> Any:
    if name.endswith("Storage"):
        return _StorageType(_STORAGE_DTYPES.get(name[: -len("Storage")]))
    if module == "torch" and name == "Size":
        return torch.Size
    if module == "torch" and name == "device":
        return _device
    value = getattr(torch, name, None) if module == "torch" else None
    if isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
        return value
    raise RefusedGlobalError(module, name)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles store bytes as _codecs.encode(str, "latin1").
    return str(text).encode(encoding if encoding in ("latin1", "latin-1", "utf-8") else "latin1")


class _StructureUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _allowed_global(module, name)

    def persistent_load(self, pid: Any) -> StoragePlaceholder:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        storage_type = pid[1]
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else None
        return StoragePlaceholder(dtype, str(pid[2]), int(pid[4]))


def load_structure(data: bytes) -> Any:
    """Unpickle a torch ``data.pkl`` into plain Python values and :class:`TensorStub` s.

    Raises:
        RefusedGlobalError: the pickle needs a global outside the allowlist.
        pickle.UnpicklingError: the bytes are not a valid pickle.
    """
    return _StructureUnpickler(io.BytesIO(data)).load()
