"""Copy a checkpoint's state into host memory, into buffers reused from save to save.

A background save must not write tensors that training keeps changing: the next optimizer
step updates the weights and AdamW's moments in place. So before the writer thread starts,
the caller copies every tensor here, and that copy is the only time training waits.

* **Sharing is kept.** Tensors that share storage (tied weights: ``lm_head.weight`` *is*
  ``transformer.wte.weight``) share one host copy, with the same offsets and strides, so
  the file stores them once, exactly as ``torch.save`` of the live state would.
* **Buffers are reused.** Each storage is copied into a buffer kept under the place it
  has in the checkpoint (``("optimizer_state_dict", "state", 3, "exp_avg")``), so the second
  and later saves allocate nothing: a fresh allocation costs page faults, several times
  the copy itself on a CPU. The price is host memory the size of the state, held between
  saves (:attr:`HostSnapshot.nbytes`; :meth:`HostSnapshot.release` frees it).
* **On a GPU the buffers are pinned** (page-locked): the copies run at full PCIe speed
  as ``non_blocking`` transfers, and one synchronize at the end makes them complete
  before training may change the tensors again.

Everything else in the checkpoint (numbers, strings, lists, dicts) is rebuilt container by
container, so a history list that training appends to later does not change the snapshot.
The result holds only CPU tensors and the same plain values, so the file it is saved to
loads with ``torch.load(weights_only=True)`` like any other.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Hashable
from typing import Any

import torch

__all__ = ["HostSnapshot", "state_nbytes"]

_CONTAINERS = (dict, collections.OrderedDict, list, tuple, set)


class HostSnapshot:
    """Host buffers that a checkpoint's tensors are copied into, kept from one save to the next.

    Not thread-safe: one snapshot at a time, and the previous snapshot must no longer be
    needed (written to disk) before the next :meth:`copy`, which overwrites its buffers.

    Args:
        pin_memory: pin the buffers of CUDA tensors (default: whenever CUDA is available).
    """

    def __init__(self, pin_memory: bool | None = None) -> None:
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._buffers: dict[tuple[Hashable, ...], torch.Tensor] = {}
        self._copied: dict[tuple[Any, ...], torch.Tensor] = {}  # this copy: source storage -> host bytes
        self._used: set[tuple[Hashable, ...]] = set()
        self._devices: set[torch.device] = set()
        self._containers: dict[int, Any] = {}  # this copy: id of a source container -> its copy

    @property
    def nbytes(self) -> int:
        """Host memory the kept buffers occupy."""
        return sum(buffer.numel() for buffer in self._buffers.values())

    def copy(self, obj: Any) -> Any:
        """A copy of ``obj`` whose tensors live in this snapshot's host buffers.

        Args:
            obj: a checkpoint dict (or any nest of dicts, lists, tuples, sets, tensors and
                immutable values).

        Returns:
            The same structure: new containers, host tensors, the same immutable values.
            Valid until the next call of :meth:`copy` or :meth:`release`.
        """
        self._copied, self._used, self._devices, self._containers = {}, set(), set(), {}
        try:
            result = self._walk(obj, ())
            for device in self._devices:  # the non_blocking copies must land before training goes on
                torch.cuda.synchronize(device)
        finally:
            self._copied, self._containers = {}, {}
        for key in set(self._buffers) - self._used:  # a tensor that is gone (or changed place)
            del self._buffers[key]
        return result

    def release(self) -> None:
        """Free every buffer (the next :meth:`copy` allocates again)."""
        self._buffers.clear()

    def _walk(self, obj: Any, where: tuple[Hashable, ...]) -> Any:
        if isinstance(obj, torch.Tensor):
            return self._tensor(obj, where)
        kind = type(obj)
        if kind not in _CONTAINERS:
            return obj  # str, numbers, None, dtype, device, Size: immutable, shared safely
        if (
            id(obj) in self._containers
        ):  # one object in two places (AdamW's betas): one copy, as pickle keeps it
            return self._containers[id(obj)]
        if kind in (dict, collections.OrderedDict):
            result = kind((key, self._walk(value, (*where, key))) for key, value in obj.items())
            if hasattr(obj, "_metadata"):  # a state_dict's module versions, which torch.save keeps too
                result._metadata = copy.deepcopy(obj._metadata)
        else:
            result = kind(self._walk(value, (*where, index)) for index, value in enumerate(obj))
        self._containers[id(obj)] = result
        return result

    def _tensor(self, tensor: torch.Tensor, where: tuple[Hashable, ...]) -> torch.Tensor:
        if not _plain(tensor):
            return tensor.detach().to("cpu", copy=True)  # rare kinds: a fresh copy, no reuse
        storage = tensor.untyped_storage()
        source = (storage.data_ptr(), storage.nbytes(), tensor.device)
        host = self._copied.get(source)
        if host is None:
            host = self._buffer(
                where, storage.nbytes(), pinned=self.pin_memory and tensor.device.type == "cuda"
            )
            self._copy_storage(storage, tensor.device, host)
            self._copied[source] = host
        view = torch.empty(0, dtype=tensor.dtype).set_(
            host.untyped_storage(), tensor.storage_offset(), tensor.size(), tensor.stride()
        )
        if isinstance(tensor, torch.nn.Parameter):
            return torch.nn.Parameter(view, requires_grad=tensor.requires_grad)
        return view

    def _buffer(self, where: tuple[Hashable, ...], nbytes: int, pinned: bool) -> torch.Tensor:
        self._used.add(where)
        buffer = self._buffers.get(where)
        if buffer is None or buffer.numel() != nbytes or buffer.is_pinned() != pinned:
            buffer = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
            self._buffers[where] = buffer
        return buffer

    def _copy_storage(self, storage: torch.UntypedStorage, device: torch.device, host: torch.Tensor) -> None:
        data = torch.empty(0, dtype=torch.uint8, device=device).set_(storage)
        if device.type == "cuda":
            host.copy_(data, non_blocking=self.pin_memory)
            self._devices.add(device)
        else:
            host.copy_(data)


def _plain(tensor: torch.Tensor) -> bool:
    """A dense tensor with ordinary storage: the kind whose bytes can be copied as they are."""
    return (
        tensor.layout == torch.strided
        and not tensor.is_quantized
        and not tensor.is_meta
        and not tensor.is_conj()
        and not tensor.is_neg()
        and type(tensor) in (torch.Tensor, torch.nn.Parameter)
    )


def state_nbytes(obj: Any) -> int:
    """The host memory a :class:`HostSnapshot` of ``obj`` needs: each storage counted once.

    Args:
        obj: a checkpoint dict, a state_dict, or any nest of them.
    """
    seen: dict[tuple[int, torch.device], int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            seen[(storage.data_ptr(), value.device)] = storage.nbytes()
        elif type(value) in (dict, collections.OrderedDict):
            for item in value.values():
                walk(item)
        elif type(value) in (list, tuple, set):
            for item in value:
                walk(item)

    walk(obj)
    return sum(seen.values())
