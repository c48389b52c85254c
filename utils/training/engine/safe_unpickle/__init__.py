"""Read the structure of a torch pickle without its tensors, without running code, within a budget.

The listing needs the epoch, step and metrics of files that carry no JSON
record (legacy files, bare ``state_dict`` files, files from other tools), and
the loader checks a file's tensors before ``torch.load`` touches them. Both read
the archive's ``data.pkl`` with this module, which interprets the pickle itself
(:mod:`vm`) instead of handing it to Python's unpickler:

* only the globals of :mod:`allowlist` are accepted, each mapped to an
  inert value or a stand-in: tensors become :class:`TensorStub` (no storage byte
  is read), DCP metadata objects become :class:`ObjectStub`; anything else raises
  :class:`RefusedGlobalError` before it is called;
* every value is charged against a :class:`PickleBudget` while it is built, so
  a few hundred crafted bytes cannot make the reader (or whoever walks its
  result) hang or exhaust memory: :class:`BudgetExceededError` says what was too big;
* opcodes that need code or global registries raise :class:`RefusedOpcodeError`;
* damaged bytes raise ``pickle.UnpicklingError`` with a short reason.

docs/reliability.md ("The restricted unpickler") lists the budgets and compares
the allowlist with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from .allowlist import DCP_CLASSES
from .budget import (
    DEFAULT_BUDGET,
    BudgetExceededError,
    PickleBudget,
    RefusedGlobalError,
    RefusedOpcodeError,
)
from .stubs import ObjectStub, SparseTensorStub, StoragePlaceholder, TensorStub
from .vm import run

__all__ = [
    "DEFAULT_BUDGET",
    "BudgetExceededError",
    "ObjectStub",
    "PickleBudget",
    "RefusedGlobalError",
    "RefusedOpcodeError",
    "SparseTensorStub",
    "StoragePlaceholder",
    "TensorStub",
    "load_structure",
    "load_structure_at",
    "read_dcp_metadata_structure",
    "walk_leaves",
]

DCP_METADATA = DCP_CLASSES[0]  # torch.distributed.checkpoint.metadata.Metadata


def _bytes_like(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray)):
        return data
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def load_structure_at(data: Any, start: int = 0, budget: PickleBudget = DEFAULT_BUDGET) -> tuple[Any, int]:
    """Unpickle the one pickle that starts at ``data[start]``; also say where it ends.

    Files of the pre-1.6 torch format are several pickles one after another (magic
    number, protocol version, system info, the object, the storage keys): read each
    with the previous one's end offset.

    Args:
        data: bytes, bytearray or a memoryview (e.g. of a memory-mapped file; not copied).
        start: the offset of the pickle's first opcode.
        budget: the limits (see :class:`PickleBudget`).

    Returns:
        (value, the offset just after the pickle's STOP opcode).

    Raises:
        RefusedGlobalError: the pickle needs a global outside the allowlist.
        RefusedOpcodeError: it uses an opcode that needs code, or changes an object it may not.
        BudgetExceededError: something in it is larger than ``budget`` allows.
        pickle.UnpicklingError: the bytes are not a valid pickle (truncated, unknown opcode, ...).
    """
    data = _bytes_like(data)
    if not 0 <= start <= len(data):
        raise pickle.UnpicklingError(f"damaged pickle: start offset {start} outside {len(data)} bytes")
    return run(data, start, budget)


def load_structure(data: Any, *, budget: PickleBudget = DEFAULT_BUDGET, start: int = 0) -> Any:
    """Unpickle a torch ``data.pkl`` into plain values, :class:`TensorStub` s and :class:`ObjectStub` s.

    Bytes after the pickle's STOP opcode are ignored, as ``pickle.loads`` does.

    Raises:
        The errors of :func:`load_structure_at`, all subclasses of ``pickle.UnpicklingError``.
    """
    return load_structure_at(data, start, budget)[0]


def read_dcp_metadata_structure(data: Any, *, budget: PickleBudget = DEFAULT_BUDGET) -> ObjectStub:
    """The ``.metadata`` file of a ``torch.distributed.checkpoint`` folder, as plain data.

    The result is ``ObjectStub("torch.distributed.checkpoint.metadata.Metadata")`` whose
    ``state`` holds:

    * ``state_dict_metadata``: ``{fqn: stub}``, each stub a ``TensorStorageMetadata``
      (``properties``: a ``TensorProperties`` stub with ``dtype``, ``layout``,
      ``requires_grad``, ``memory_format``, ``pin_memory``; ``size``: ``torch.Size``;
      ``chunks``: list of ``ChunkStorageMetadata`` stubs with ``offsets`` and ``sizes``)
      or a ``BytesStorageMetadata`` stub (empty state: a pickled non-tensor value);
    * ``planner_data``: ``{fqn: tuple of keys}``, the path of each entry in the state dict;
    * ``storage_data``: ``{MetadataIndex stub (fqn, offset, index): _StorageInfo stub
      (relative_path, offset, length[, transform_descriptors])}``, where each item's bytes are;
    * ``storage_meta``: a ``StorageMeta`` stub (``checkpoint_id`` as str, ``save_id``,
      ``load_id``, ``modules``) or None; ``version``: str (torch >= 2.4).

    Fields a newer torch adds appear in ``state`` as read. Read a field with
    ``stub.state["name"]`` or ``stub.get("name")``.

    Raises:
        pickle.UnpicklingError: the file holds something else; and the errors of
            :func:`load_structure_at`.
    """
    found = load_structure(data, budget=budget)
    if not (isinstance(found, ObjectStub) and found.qualified_name == DCP_METADATA):
        shown = found.class_name if isinstance(found, ObjectStub) else type(found).__name__
        raise pickle.UnpicklingError(f"not a distributed checkpoint's .metadata: it holds a {shown}")
    return found


def walk_leaves(
    obj: Any, leaf_type: type | tuple[type, ...], max_nodes: int = DEFAULT_BUDGET.max_cost
) -> int:
    """How many ``leaf_type`` values ``obj`` holds, visiting at most ``max_nodes`` values.

    Looks into dict values, list, tuple, set and frozenset items, and :class:`ObjectStub`
    fields, iteratively (no recursion, whatever the depth). A value reached twice (a
    shared list) is visited twice, so the count is what a recursive walk would return.

    Raises:
        BudgetExceededError: more than ``max_nodes`` values would be visited.
    """
    count, visited, pending = 0, 0, [obj]
    while pending:
        item = pending.pop()
        visited += 1
        if isinstance(item, leaf_type):
            count += 1
            continue
        if isinstance(item, ObjectStub):
            item = item.state
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = item
        else:
            continue
        if visited + len(pending) + len(children) > max_nodes:
            raise BudgetExceededError("a structure with more values than", max_nodes)
        pending.extend(children)
    return count
