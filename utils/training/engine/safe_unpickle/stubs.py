"""The stand-ins the restricted unpickler builds instead of tensors, storages and objects.

They hold what the pickle says and nothing more: no tensor bytes are read, no
class of the file's choosing is instantiated, and no attribute is set on a real
object. :mod:`tensors` validates every field before it builds one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

__all__ = ["ObjectStub", "SparseTensorStub", "StoragePlaceholder", "TensorStub", "assemble"]


@dataclass(frozen=True)
class StoragePlaceholder:
    """A tensor storage named by torch's persistent id ``('storage', type, key, location, numel)``.

    Attributes:
        dtype: the storage's element type (``torch.uint8`` for an ``UntypedStorage``, whose
            ``numel`` counts bytes).
        key: its member name in ``<root>/data/`` of a zip checkpoint (letters, digits, ``_``).
        numel: its length in elements of ``dtype``.
        location: the device it was saved from (``"cpu"``, ``"cuda:0"``, ...).
    """

    dtype: torch.dtype | None
    key: str
    numel: int
    location: str = "cpu"

    @property
    def nbytes(self) -> int:
        """The storage's length in bytes (0 when the dtype is unknown)."""
        return self.numel * self.dtype.itemsize if self.dtype is not None else 0


@dataclass(frozen=True)
class TensorStub:
    """A tensor whose bytes were not read.

    Attributes:
        dtype, shape, stride: as the tensor will have them (None when unknown).
        storage: where its elements are (None for meta, sparse, nested and device tensors).
        offset: its first element's index in the storage, in elements of ``dtype``.
        kind: ``"strided"`` for an ordinary tensor; ``"sparse"``, ``"quantized"``,
            ``"nested"``, ``"meta"``, ``"wrapper"``, ``"device"``, ``"numpy"`` otherwise.
        components: the tensors it is built from (sparse indices and values, the buffer of a
            nested tensor, the CPU tensor of a device tensor).
        math_bits: ``"conj"`` and/or ``"neg"`` when torch saved a lazily conjugated or negated
            view: its storage holds the values before that operation, apply it after reading.
    """

    dtype: torch.dtype | None = None
    shape: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    storage: StoragePlaceholder | None = None
    offset: int = 0
    kind: str = "strided"
    components: tuple[TensorStub, ...] = ()
    math_bits: tuple[str, ...] = ()

    @property
    def opaque(self) -> bool:
        """True when its values cannot be read from a storage without torch's own loader."""
        return self.kind != "strided"

    @property
    def numel(self) -> int | None:
        """Elements of the tensor (None when the shape is unknown)."""
        if self.shape is None:
            return None
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def storage_extent(self) -> int:
        """Elements of the storage the view spans from ``offset`` (0 for an empty tensor)."""
        if self.shape is None or self.stride is None:
            return 0
        if 0 in self.shape:
            return 0
        return 1 + sum((size - 1) * step for size, step in zip(self.shape, self.stride, strict=False))

    def storages(self) -> tuple[StoragePlaceholder, ...]:
        """Every storage this tensor reads, its components' included (for checksums)."""
        own = (self.storage,) if self.storage is not None else ()
        return own + tuple(s for part in self.components for s in part.storages())


@dataclass(frozen=True)
class SparseTensorStub(TensorStub):
    """A sparse tensor (``torch._utils._rebuild_sparse_tensor``), loadable as weights_only does.

    ``components`` are in torch's order: ``(indices, values)`` for COO,
    ``(compressed_indices, plain_indices, values)`` for CSR/CSC/BSR/BSC; ``shape`` is the
    sparse size and ``dtype`` the values' dtype. Rebuild it with
    ``torch.sparse_coo_tensor(*parts, shape, is_coalesced=...)`` or
    ``torch.sparse_compressed_tensor(*parts, shape, layout=layout)``, then check it with
    ``torch._validate_sparse_*_tensor_args`` (``check_invariants=True``).
    """

    layout: torch.layout | None = None
    is_coalesced: bool | None = None


class ObjectStub:
    """An allowlisted object (``torch.distributed.checkpoint`` metadata) as plain data.

    Attributes:
        qualified_name: ``module.Class`` as the pickle names it.
        state: its fields (the dict the pickle's BUILD gave; empty when it had none).

    Equality and hashing are by identity, as for the original dataclass instances used as
    dict keys (``MetadataIndex`` in ``storage_data``): no field is hashed, so a crafted key
    cannot make a dict slow.
    """

    __slots__ = ("qualified_name", "state")

    def __init__(self, qualified_name: str, state: dict[str, Any] | None = None) -> None:
        self.qualified_name = qualified_name
        self.state: dict[str, Any] = state if state is not None else {}

    @property
    def class_name(self) -> str:
        return self.qualified_name.rpartition(".")[2]

    def get(self, field: str, default: Any = None) -> Any:
        return self.state.get(field, default)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in list(self.state.items())[:8])
        return f"{self.class_name}({fields}{', ...' if len(self.state) > 8 else ''})"


_FIELDS = {
    cls: tuple(f.name for f in fields(cls)) for cls in (StoragePlaceholder, TensorStub, SparseTensorStub)
}
_new = object.__new__


def assemble(cls: type, *values: Any) -> Any:
    """An instance of the frozen dataclass ``cls`` from all its field values, in order.

    The unpickler builds thousands of stubs per checkpoint; a frozen dataclass's ``__init__``
    sets each field through ``object.__setattr__``, three times slower than this.
    """
    obj = _new(cls)
    obj.__dict__.update(zip(_FIELDS[cls], values, strict=True))
    return obj
