"""Stand-ins for torch's tensor rebuild functions and persistent storages, with their checks.

Each function here takes the argument tuple the pickle gives torch's own
``torch._utils._rebuild_*`` function and returns a :class:`TensorStub` instead of a
tensor. Every field is checked first: sizes and strides must be tuples of
non-negative Python ints (a string or a 0-dim tensor in a size is damage, not a
number), the view must fit inside its storage, and the element count must be
within the budget. Nothing allocates memory in proportion to a size in the file.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .budget import BudgetExceededError, PickleBudget
from .stubs import SparseTensorStub, StoragePlaceholder, TensorStub, assemble

__all__ = ["Global", "StorageType", "TENSOR_REBUILDERS", "persistent_storage", "sizes"]

_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_LOCATION = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_SPARSE_COMPRESSED = (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


@dataclass(frozen=True, eq=False)
class Global:
    """What an allowlisted global stands for on the unpickler's stack (never the real object).

    ``call`` runs for REDUCE, ``new`` for NEWOBJ; each takes ``(args, budget)``. ``opens``:
    the result is a fresh container that later SETITEMS/APPEND/BUILD may fill.
    """

    name: str
    call: Callable[[tuple, PickleBudget], Any] | None = None
    new: Callable[[tuple, PickleBudget], Any] | None = None
    opens: bool = False
    tensor_type: bool = False  # torch.Tensor / Parameter: a class argument of a rebuild function
    rebuilds_tensor: bool = False  # a torch._utils._rebuild_* function

    def __repr__(self) -> str:
        return f"<global {self.name}>"


@dataclass(frozen=True)
class StorageType:
    """``torch.FloatStorage`` and friends: only their dtype matters to a persistent id."""

    name: str
    dtype: torch.dtype


def damaged(reason: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"damaged tensor record: {reason}")


def _arguments(args: tuple, name: str, low: int, high: int) -> tuple:
    if not isinstance(args, tuple) or not low <= len(args) <= high:
        count = len(args) if isinstance(args, tuple) else type(args).__name__
        expected = str(low) if low == high else f"{low} to {high}"
        raise damaged(f"{name} takes {expected} arguments, found {count}")
    return args


def _shown(value: Any) -> str:
    if type(value) is int:
        return str(value)
    return "a tensor" if isinstance(value, TensorStub) else f"a {type(value).__name__}"


def sizes(value: Any, budget: PickleBudget, what: str) -> tuple[int, ...]:
    """``value`` as a tuple of non-negative ints, each at most ``budget.max_numel``."""
    if type(value) is not tuple:
        if not isinstance(value, tuple):  # torch.Size is a tuple too
            raise damaged(f"its {what} is {_shown(value)}, expected a tuple of ints")
        value = tuple(value)
    if len(value) > budget.max_tensor_dims:
        raise BudgetExceededError("a tensor with more dimensions than", budget.max_tensor_dims, len(value))
    limit = budget.max_numel
    for item in value:
        if type(item) is not int or not 0 <= item <= limit:
            _bad_size(value, limit, what)
    return value


def _bad_size(value: tuple, limit: int, what: str) -> None:
    for index, item in enumerate(value):
        if type(item) is not int or item < 0:
            raise damaged(f"{what} element {index} is {_shown(item)}, expected a non-negative int")
        if item > limit:
            raise BudgetExceededError(f"a tensor {what} larger than", limit, item)


def _count(value: Any, budget: PickleBudget, what: str) -> int:
    if type(value) is not int or value < 0:
        raise damaged(f"its {what} is {_shown(value)}, expected a non-negative int")
    if value > budget.max_numel:
        raise BudgetExceededError(f"a {what} larger than", budget.max_numel, value)
    return value


def _checked_numel(shape: tuple[int, ...], budget: PickleBudget) -> None:
    count = 1
    for size in shape:
        count *= size
        if count > budget.max_numel:
            raise BudgetExceededError("a tensor with more elements than", budget.max_numel)


def _dtype(value: Any) -> torch.dtype:
    if not isinstance(value, torch.dtype):
        raise damaged(f"its dtype is {_shown(value)}")
    return value


def _tensor(value: Any, what: str) -> TensorStub:
    if not isinstance(value, TensorStub):
        raise damaged(f"its {what} is {_shown(value)}, expected a tensor")
    return value


def _math_bits(metadata: Any) -> tuple[str, ...]:
    """The conj/neg flags of ``_rebuild_tensor_v2/v3``'s optional metadata dict."""
    if metadata is None:
        return ()
    if type(metadata) is not dict:
        raise damaged(f"its metadata is {_shown(metadata)}, expected a dict")
    return tuple(bit for bit in ("conj", "neg") if metadata.get(bit) is True)


def _strided(storage, offset, size, stride, dtype, budget, kind="strided", bits=()) -> TensorStub:
    """A view of ``storage``: checked shape, strides, and that it lies inside the storage."""
    if type(storage) is not StoragePlaceholder:
        raise damaged(f"its storage is {_shown(storage)}, expected a persistent storage")
    shape = sizes(size, budget, "size")
    strides = sizes(stride, budget, "stride")
    if len(strides) != len(shape):
        raise damaged(f"{len(shape)} sizes but {len(strides)} strides")
    if type(offset) is not int or not 0 <= offset <= budget.max_numel:
        _count(offset, budget, "storage offset")
    numel, extent = 1, 1
    for length, step in zip(shape, strides, strict=True):
        numel *= length
        extent += (length - 1) * step
    if numel > budget.max_numel:
        raise BudgetExceededError("a tensor with more elements than", budget.max_numel, numel)
    if numel and (offset + extent) * dtype.itemsize > storage.numel * storage.dtype.itemsize:
        raise damaged(
            f"the tensor spans {offset + extent:,} elements of its storage {storage.key!r}, "
            f"which holds {storage.nbytes // dtype.itemsize:,}"
        )
    return assemble(TensorStub, dtype, shape, strides, storage, offset, kind, (), bits)


def _requires_grad(value: Any) -> None:
    if type(value) is not bool:
        raise damaged(f"requires_grad is {_shown(value)}, expected a bool")


def rebuild_tensor(args: tuple, budget: PickleBudget) -> TensorStub:
    """``_rebuild_tensor(storage, offset, size, stride)`` (files before PyTorch 1.0)."""
    storage, offset, size, stride = _arguments(args, "_rebuild_tensor", 4, 4)
    return _strided(storage, offset, size, stride, getattr(storage, "dtype", None) or torch.uint8, budget)


def rebuild_tensor_v2(args: tuple, budget: PickleBudget) -> TensorStub:
    """``(storage, offset, size, stride, requires_grad, hooks[, metadata])``: dtype from the storage."""
    storage, offset, size, stride, requires_grad, _hooks, *metadata = _arguments(
        args, "_rebuild_tensor_v2", 6, 7
    )
    _requires_grad(requires_grad)
    dtype = storage.dtype if isinstance(storage, StoragePlaceholder) else torch.uint8
    return _strided(storage, offset, size, stride, dtype, budget, bits=_math_bits((metadata or [None])[0]))


def rebuild_tensor_v3(args: tuple, budget: PickleBudget) -> TensorStub:
    """``(untyped storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])``."""
    storage, offset, size, stride, requires_grad, _hooks, dtype, *_ = _arguments(
        args, "_rebuild_tensor_v3", 7, 8
    )
    _requires_grad(requires_grad)
    return _strided(storage, offset, size, stride, _dtype(dtype), budget)


def rebuild_qtensor(args: tuple, budget: PickleBudget) -> TensorStub:
    """``(storage, offset, size, stride, quantizer_params, requires_grad, hooks)``."""
    storage, offset, size, stride, params, requires_grad, _ = _arguments(args, "_rebuild_qtensor", 7, 7)
    if not (isinstance(params, tuple) and params and isinstance(params[0], torch.qscheme)):
        raise damaged("its quantizer parameters do not start with a qscheme")
    _requires_grad(requires_grad)
    dtype = storage.dtype if isinstance(storage, StoragePlaceholder) else torch.uint8
    return _strided(storage, offset, size, stride, dtype, budget, kind="quantized")


def rebuild_parameter(args: tuple, _budget: PickleBudget) -> TensorStub:
    """``_rebuild_parameter(data, requires_grad, hooks[, state])`` and ``Parameter(data, ...)``."""
    data, *_ = _arguments(args, "Parameter", 1, 4)
    return _tensor(data, "data")


def rebuild_sparse_tensor(args: tuple, budget: PickleBudget) -> SparseTensorStub:
    """``(layout, data)``: COO ``(indices, values, size[, is_coalesced])`` or compressed 4-tuples."""
    layout, data = _arguments(args, "_rebuild_sparse_tensor", 2, 2)
    if layout == torch.sparse_coo:
        indices, values, size, *rest = _arguments(data, "a sparse COO record", 3, 4)
        parts, coalesced = (_tensor(indices, "indices"), _tensor(values, "values")), (rest or [None])[0]
        if coalesced is not None and type(coalesced) is not bool:
            raise damaged(f"is_coalesced is {_shown(coalesced)}, expected a bool")
    elif layout in _SPARSE_COMPRESSED:
        *parts, size = _arguments(data, "a sparse compressed record", 4, 4)
        parts, coalesced = tuple(_tensor(p, "index or value tensor") for p in parts), None
    else:
        raise damaged(
            f"its sparse layout is {layout if isinstance(layout, torch.layout) else _shown(layout)}"
        )
    shape = sizes(size, budget, "size")
    _checked_numel(shape, budget)
    return SparseTensorStub(
        parts[-1].dtype, shape, kind="sparse", components=parts, layout=layout, is_coalesced=coalesced
    )


def rebuild_meta_tensor(args: tuple, budget: PickleBudget) -> TensorStub:
    """``_rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad)``: no bytes at all."""
    dtype, size, stride, _ = _arguments(args, "_rebuild_meta_tensor_no_storage", 4, 4)
    shape = sizes(size, budget, "size")
    _checked_numel(shape, budget)
    return TensorStub(_dtype(dtype), shape, sizes(stride, budget, "stride"), kind="meta")


def rebuild_nested_tensor(args: tuple, _budget: PickleBudget) -> TensorStub:
    """``(buffer, sizes, strides, storage_offsets)``: four tensors."""
    parts = tuple(_tensor(p, "part") for p in _arguments(args, "_rebuild_nested_tensor", 4, 4))
    return TensorStub(parts[0].dtype, kind="nested", components=parts)


def rebuild_wrapper_subclass(args: tuple, budget: PickleBudget) -> TensorStub:
    """``(cls, dtype, size, stride, storage_offset, layout, device, requires_grad)``."""
    cls, dtype, size, stride, offset, *_ = _arguments(args, "_rebuild_wrapper_subclass", 8, 8)
    if not (isinstance(cls, Global) and cls.tensor_type):
        raise damaged(f"its class is {_shown(cls)}, expected an allowlisted tensor type")
    shape = sizes(size, budget, "size")
    _checked_numel(shape, budget)
    strides = sizes(stride, budget, "stride")
    return TensorStub(
        _dtype(dtype), shape, strides, None, _count(offset, budget, "storage offset"), "wrapper"
    )


def rebuild_device_tensor(args: tuple, _budget: PickleBudget) -> TensorStub:
    """``_rebuild_device_tensor_from_cpu_tensor(data, dtype, device, requires_grad)``."""
    data, dtype, *_ = _arguments(args, "_rebuild_device_tensor_from_cpu_tensor", 4, 4)
    data = _tensor(data, "data")
    return TensorStub(_dtype(dtype), data.shape, data.stride, kind="device", components=(data,))


def rebuild_numpy_tensor(args: tuple, _budget: PickleBudget) -> TensorStub:
    """``_rebuild_device_tensor_from_numpy(data, ...)``: its numpy data is refused before this."""
    _, dtype, *_ = _arguments(args, "_rebuild_device_tensor_from_numpy", 4, 4)
    return TensorStub(_dtype(dtype), kind="numpy")


TENSOR_REBUILDERS = {
    "_rebuild_tensor": rebuild_tensor,
    "_rebuild_tensor_v2": rebuild_tensor_v2,
    "_rebuild_tensor_v3": rebuild_tensor_v3,
    "_rebuild_parameter": rebuild_parameter,
    "_rebuild_parameter_with_state": rebuild_parameter,
    "_rebuild_qtensor": rebuild_qtensor,
    "_rebuild_sparse_tensor": rebuild_sparse_tensor,
    "_rebuild_meta_tensor_no_storage": rebuild_meta_tensor,
    "_rebuild_nested_tensor": rebuild_nested_tensor,
    "_rebuild_wrapper_subclass": rebuild_wrapper_subclass,
    "_rebuild_device_tensor_from_cpu_tensor": rebuild_device_tensor,
    "_rebuild_device_tensor_from_numpy": rebuild_numpy_tensor,
}


def persistent_storage(pid: Any, budget: PickleBudget) -> StoragePlaceholder:
    """torch's persistent id ``('storage', type, key, location, numel[, None])`` as a placeholder.

    Raises:
        pickle.UnpicklingError: any other persistent id, or a field of the wrong kind.
    """
    if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] in ("storage", b"storage")):
        raise pickle.UnpicklingError("damaged pickle: a persistent id that is not a torch storage")
    _, storage_type, key, location, numel, *view = pid
    if view and view[0] is not None:
        raise pickle.UnpicklingError("storage views (files from PyTorch before 0.4) are not read")
    if type(storage_type) is not StorageType:
        raise damaged(f"its storage type is {_shown(storage_type)}")
    if not (type(key) is str and _KEY.fullmatch(key)):
        raise damaged("its storage key is not 1-64 letters, digits or '_'")
    if type(location) is not str or location not in _LOCATIONS_SEEN:
        _check_location(location)
    if type(numel) is not int or not 0 <= numel <= budget.max_numel:
        _count(numel, budget, "storage size")
    return assemble(StoragePlaceholder, storage_type.dtype, key, numel, location)


_LOCATIONS_SEEN: set[str] = set()  # device names already checked (a file names a handful)


def _check_location(location: Any) -> None:
    if not (type(location) is str and _LOCATION.fullmatch(location)):
        raise damaged("its storage location is not a device name")
    if len(_LOCATIONS_SEEN) < 256:
        _LOCATIONS_SEEN.add(location)
