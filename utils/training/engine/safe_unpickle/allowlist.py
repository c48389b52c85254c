"""The closed list of globals the restricted unpickler accepts, and what each stands for.

A pickle names functions and classes by ``module.name`` and asks the reader to
call them. Here each allowed name maps to an inert value (a dtype, a layout), a
:class:`StorageType`, or a :class:`Global` whose handler builds a plain value or
a stub from already-checked arguments. No name is ever imported or looked up:
anything not in ``_TABLE`` raises :class:`RefusedGlobalError` before any call.
docs/reliability.md ("The restricted unpickler") compares the list with torch's.
"""

from __future__ import annotations

import collections
import pathlib
import pickle
import re
from typing import Any

import torch

from .budget import (
    BudgetExceededError,
    HashSpread,
    PickleBudget,
    RefusedGlobalError,
    RefusedOpcodeError,
)
from .stubs import ObjectStub
from .tensors import TENSOR_REBUILDERS, Global, StorageType, rebuild_parameter

__all__ = ["DCP_CLASSES", "DICT_SUBCLASSES", "apply_build", "resolve"]

# Python 2 module names that protocol 0-2 pickles may carry (pickle's own fix_imports).
_MODULE_FIXES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

DCP_CLASSES = tuple(
    f"torch.distributed.checkpoint.{name}"
    for name in (
        "metadata.Metadata",
        "metadata.StorageMeta",
        "metadata.TensorStorageMetadata",
        "metadata.BytesStorageMetadata",
        "metadata.ChunkStorageMetadata",
        "metadata.TensorProperties",
        "metadata.MetadataIndex",
        "filesystem._StorageInfo",
    )
)
# TensorProperties.__getstate__ writes a tuple in this order (torch >= 2.1).
_TENSOR_PROPERTIES = ("dtype", "layout", "requires_grad", "memory_format", "pin_memory")
# dict subclasses that training tools pickle as plain dicts; read as dict, their code never runs.
DICT_SUBCLASSES = (
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
)
# torch.storage._storage_type_to_dtype_map() of torch 2.13; merged with the installed torch's below.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "BFloat16Storage": torch.bfloat16,
    "ComplexDoubleStorage": torch.complex128,
    "ComplexFloatStorage": torch.complex64,
    "QInt8Storage": torch.qint8,
    "QInt32Storage": torch.qint32,
    "QUInt8Storage": torch.quint8,
    "QUInt4x2Storage": torch.quint4x2,
    "QUInt2x4Storage": torch.quint2x4,
}
_MEMORY_FORMATS = {0: torch.contiguous_format, 1: torch.channels_last, 2: torch.preserve_format}
_DEVICE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}(:[0-9]{1,5})?")
_INT64 = 1 << 63


def _damaged(reason: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"damaged pickle: {reason}")


def _args(args: tuple, name: str, *counts: int) -> tuple:
    if not isinstance(args, tuple) or len(args) not in counts:
        raise _damaged(f"{name} called with {len(args) if isinstance(args, tuple) else 'no'} arguments")
    return args


def _ordered_dict(args, _budget) -> collections.OrderedDict:
    if _args(args, "OrderedDict", 0, 1) and not (type(args[0]) in (list, tuple) and not args[0]):
        raise _damaged("OrderedDict with items in its arguments (a pickler writes them as SETITEMS)")
    return collections.OrderedDict()


def _hashed(args, name: str, budget: PickleBudget) -> list:
    items = _args(args, name, 0, 1)[0] if args else []
    if not isinstance(items, (list, tuple)):
        raise _damaged(f"{name} of a {type(items).__name__}")
    if len(items) > budget.max_sequence:
        raise BudgetExceededError("a container with more elements than", budget.max_sequence, len(items))
    spread = HashSpread()
    for item in items:
        spread.add(item)
    return items


def _complex(args, _budget) -> complex:
    parts = _args(args, "complex", 1, 2)
    if not all(type(p) in (int, float) for p in parts):
        raise _damaged("complex of a non-number")
    return complex(*parts)


def _slice(args, _budget) -> slice:
    parts = _args(args, "slice", 1, 2, 3)
    if not all(p is None or type(p) is int for p in parts):
        raise _damaged("slice of a non-integer")
    return slice(*parts)


def _empty_bytes(args, _budget) -> bytes:
    _args(args, "bytes", 0)  # protocol 0-2 write b"" as bytes(); other bytes as _codecs.encode
    return b""


def _latin1(args, _budget) -> bytes:
    text, encoding = _args(args, "_codecs.encode", 2)
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
        raise _damaged("_codecs.encode of something other than a latin1 str")
    try:
        return text.encode("latin1")
    except UnicodeEncodeError:
        raise _damaged("_codecs.encode of a str that is not latin1") from None


def _size(args, budget: PickleBudget) -> torch.Size:
    (dims,) = _args(args, "torch.Size", 1)
    if not isinstance(dims, tuple) or not all(type(d) is int and -_INT64 <= d < _INT64 for d in dims):
        raise _damaged("torch.Size of something other than int64 numbers")
    if len(dims) > budget.max_tensor_dims:
        raise BudgetExceededError("a torch.Size with more dimensions than", budget.max_tensor_dims, len(dims))
    return torch.Size(dims)


def _device(args, _budget) -> str:
    """``torch.device(type[, index])`` as its string (``"cuda:0"``); no device is touched."""
    kind, *index = _args(args, "torch.device", 1, 2)
    if not (isinstance(kind, str) and _DEVICE.fullmatch(kind)):
        raise _damaged("torch.device of something other than a device name")
    if index and index[0] is not None:
        if type(index[0]) is not int or not 0 <= index[0] < 1 << 16:
            raise _damaged("torch.device with an index that is not a small int")
        return f"{kind}:{index[0]}"
    return kind


def _layout(args, _budget) -> torch.layout:
    (name,) = _args(args, "_get_layout", 1)
    if type(name) is not str or name not in _LAYOUTS:
        raise _damaged("_get_layout of an unknown layout")
    return _LAYOUTS[name]


def _path(windows: bool):
    def build(args, budget: PickleBudget) -> str:
        """A ``pathlib`` path (DCP's ``StorageMeta.checkpoint_id``) as a str; nothing on disk."""
        if not isinstance(args, tuple) or not all(isinstance(p, str) for p in args):
            raise _damaged("a path of something other than strings")
        if sum(len(p) for p in args) > budget.max_str_bytes:
            raise BudgetExceededError("a path longer than", budget.max_str_bytes, unit=" characters")
        return str((pathlib.PureWindowsPath if windows else pathlib.PurePosixPath)(*args))

    return build


def _memory_format(args, _budget) -> torch.memory_format:
    (code,) = _args(args, "_MEM_FORMAT_ENCODING", 1)
    if type(code) is not int or code not in _MEMORY_FORMATS:
        raise _damaged("an unknown _MEM_FORMAT_ENCODING")
    return _MEMORY_FORMATS[code]


def _from_type_v2(args, budget: PickleBudget):
    """``_rebuild_from_type_v2(func, new_type, args, state)``: the tensor; its Python state unused."""
    func, new_type, func_args, _state = _args(args, "_rebuild_from_type_v2", 4)
    if not (isinstance(func, Global) and func.rebuilds_tensor and isinstance(new_type, Global)):
        raise RefusedOpcodeError(
            "REDUCE", "of _rebuild_from_type_v2 with a function that is not a tensor rebuild"
        )
    if not new_type.tensor_type:
        raise RefusedOpcodeError("REDUCE", f"of _rebuild_from_type_v2 with the class {new_type.name}")
    return func.call(func_args, budget)


def _new_object(qualified_name: str):
    def new(args, _budget) -> ObjectStub:
        _args(args, qualified_name, 0)
        return ObjectStub(qualified_name)

    return new


def _new_dict(args, _budget) -> dict:
    _args(args, "AttributeDict", 0)
    return {}


def _newobj(args, budget: PickleBudget):
    """``copyreg.__newobj__(cls, *args)``: protocol 0/1's spelling of NEWOBJ."""
    if not args or not isinstance(args[0], Global) or args[0].new is None:
        raise RefusedOpcodeError("REDUCE", "of copyreg.__newobj__ with a class that is not allowlisted")
    return args[0].new(args[1:], budget)


def _newobj_ex(args, budget: PickleBudget):
    cls, cls_args, kwargs = _args(args, "copyreg.__newobj_ex__", 3)
    if not isinstance(cls_args, tuple) or kwargs:
        raise RefusedOpcodeError("REDUCE", "of copyreg.__newobj_ex__ with keyword arguments")
    return _newobj((cls, *cls_args), budget)


def _reconstructor(args, budget: PickleBudget):
    """``copyreg._reconstructor(cls, base, state)``: protocol 0/1 pickles of our classes."""
    cls, base, state = _args(args, "copyreg._reconstructor", 3)
    if isinstance(cls, Global) and cls.name in DICT_SUBCLASSES and base is _DICT and type(state) is dict:
        return dict(state)  # a copy keeps the stored hashes: nothing is hashed again
    if isinstance(cls, Global) and cls.name in DCP_CLASSES and base is _OBJECT and state is None:
        return cls.new((), budget)
    raise RefusedOpcodeError("REDUCE", "of copyreg._reconstructor other than for an allowlisted class")


def apply_build(target: Any, state: Any) -> bool:
    """BUILD ``state`` into ``target``; True when the state is kept (its cost then counts).

    Raises:
        RefusedOpcodeError: any BUILD but a no-op, a state_dict's ``_metadata``, or our stubs'.
    """
    if isinstance(target, ObjectStub):
        target.state = _stub_state(target.qualified_name, state)
        return True
    if type(target) in (dict, collections.OrderedDict):
        if state is None or (type(state) is dict and not state):
            return False  # an empty __dict__: nothing to set
        if type(target) is collections.OrderedDict and type(state) is dict and list(state) == ["_metadata"]:
            return False  # nn.Module.state_dict()'s version table: not needed to read the weights
    raise RefusedOpcodeError(
        "BUILD", f"on a {type(target).__name__}: setting attributes on it could change how it behaves"
    )


def _stub_state(qualified_name: str, state: Any) -> dict:
    if qualified_name.endswith(".TensorProperties") and isinstance(state, tuple):
        if len(state) != len(_TENSOR_PROPERTIES):
            raise _damaged(f"TensorProperties state of {len(state)} fields")
        return dict(zip(_TENSOR_PROPERTIES, state, strict=True))
    if state is None:
        return {}
    if type(state) is not dict or not all(type(k) is str for k in state):
        raise _damaged(f"the state of {qualified_name} is not a dict of field names")
    return state


def _storage_dtypes() -> dict[str, torch.dtype]:
    try:  # the installed torch's own mapping, should it know more names than ours
        return {**_STORAGE_DTYPES, **torch.storage._storage_type_to_dtype_map()}
    except (AttributeError, TypeError):  # pragma: no cover - a torch without the private helper
        return dict(_STORAGE_DTYPES)


def _build_table() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for name, value in vars(torch).items():
        if isinstance(value, (torch.dtype, torch.layout, torch.memory_format, torch.qscheme)):
            table["torch", name] = value
    for name, dtype in _storage_dtypes().items():
        table["torch", name] = table["torch.cuda", name] = StorageType(name, dtype)
    untyped = StorageType("UntypedStorage", torch.uint8)
    table["torch", "UntypedStorage"] = table["torch.storage", "UntypedStorage"] = untyped
    for name, handler in TENSOR_REBUILDERS.items():
        table["torch._utils", name] = Global(f"torch._utils.{name}", call=handler, rebuilds_tensor=True)
    table["torch._tensor", "_rebuild_from_type_v2"] = Global(
        "torch._tensor._rebuild_from_type_v2", _from_type_v2
    )
    table["torch", "Tensor"] = Global("torch.Tensor", tensor_type=True)
    parameter = Global("torch.nn.parameter.Parameter", rebuild_parameter, rebuild_parameter, tensor_type=True)
    table["torch.nn.parameter", "Parameter"] = parameter
    for module, name, call, opens in _VALUE_BUILDERS:
        table[module, name] = Global(f"{module}.{name}", call, opens=opens)
    for qualified in DCP_CLASSES:
        module, _, name = qualified.rpartition(".")
        table[module, name] = Global(qualified, new=_new_object(qualified), opens=True)
    for qualified in DICT_SUBCLASSES:
        module, _, name = qualified.rpartition(".")
        table[module, name] = Global(qualified, new=_new_dict, opens=True)
    table["builtins", "dict"], table["builtins", "object"] = _DICT, _OBJECT
    return table


_LAYOUTS = {str(v): v for v in vars(torch).values() if isinstance(v, torch.layout)}
_DICT, _OBJECT = Global("builtins.dict"), Global("builtins.object")  # only as _reconstructor's base
_VALUE_BUILDERS = (
    ("collections", "OrderedDict", _ordered_dict, True),
    ("builtins", "set", lambda a, b: set(_hashed(a, "set", b)), True),
    ("builtins", "frozenset", lambda a, b: frozenset(_hashed(a, "frozenset", b)), False),
    ("builtins", "complex", _complex, False),
    ("builtins", "slice", _slice, False),
    ("builtins", "bytes", _empty_bytes, False),
    ("_codecs", "encode", _latin1, False),
    ("torch", "Size", _size, False),
    ("torch", "device", _device, False),
    ("torch.serialization", "_get_layout", _layout, False),
    ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING", _memory_format, False),
    ("copyreg", "_reconstructor", _reconstructor, True),
    ("copyreg", "__newobj__", _newobj, True),
    ("copyreg", "__newobj_ex__", _newobj_ex, True),
    *(
        (module, cls, _path(cls.endswith("WindowsPath")), False)
        for module in ("pathlib", "pathlib._local")
        for cls in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")
    ),
)
_TABLE = _build_table()


def resolve(module: str, name: str) -> Any:
    """What the global ``module.name`` stands for.

    Raises:
        RefusedGlobalError: the name is not in the allowlist.
    """
    module = _MODULE_FIXES.get(module, module)
    found = _TABLE.get((module, name))
    if found is None:
        raise RefusedGlobalError(module, name)
    return found
