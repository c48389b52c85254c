"""What every source of ``torch.save`` files shares: the probe's torch file, and stubs as specs."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch

from ..safe_unpickle import SparseTensorStub, TensorStub
from ..torchfile import PICKLE_MAGIC, ZIP_MAGIC, TorchFile
from .base import Probe, TensorSpec, WeightSet

__all__ = ["is_torch_file", "torch_file", "structure_of", "tensor_spec", "stub_weights", "is_stub"]


def is_torch_file(probe: Probe) -> bool:
    """A regular file that starts like a torch zip or a pre-1.6 torch pickle."""
    return not probe.is_dir and (probe.head.startswith(ZIP_MAGIC) or probe.head.startswith(PICKLE_MAGIC))


def torch_file(probe: Probe) -> TorchFile:
    """The probe's file as a :class:`TorchFile` (opened once per probe)."""
    return probe.cached("torch_file", lambda: TorchFile(probe.file))


def structure_of(probe: Probe) -> Any:
    """The probe's ``data.pkl`` as plain values and stubs (read once per probe)."""
    return probe.cached("structure", lambda: torch_file(probe).structure())


def is_stub(value: Any) -> bool:
    return isinstance(value, TensorStub)


def tensor_spec(stub: TensorStub) -> TensorSpec:
    """A stub's shape and dtype, and why it cannot be loaded into a dense tensor, if it cannot.

    Sparse tensors load (densified, as ``weights_only`` loads them); quantized, nested, meta
    and device-only tensors are refused with that reason.
    """
    if isinstance(stub, SparseTensorStub):
        return TensorSpec(tuple(stub.shape or ()), stub.dtype, layout=str(stub.layout).replace("torch.", ""))
    if stub.opaque or stub.storage is None or stub.dtype is None or stub.shape is None:
        return TensorSpec(
            tuple(stub.shape or ()), stub.dtype, layout=stub.kind, problem=f"a {stub.kind} tensor"
        )
    return TensorSpec(tuple(stub.shape), stub.dtype)


def storage_key(stub: TensorStub) -> Hashable:
    """Equal for two stubs that are one stored tensor (same storage, same view)."""
    if not isinstance(stub, SparseTensorStub) and stub.storage is not None:
        return (stub.storage.key, stub.offset, tuple(stub.shape or ()), tuple(stub.stride or ()))
    return ("own", id(stub))


def stub_weights(probe: Probe, stubs: Mapping[str, Any], *, notes: tuple[str, ...] = ()) -> WeightSet:
    """A WeightSet over ``name -> stub`` of the probe's torch file (tensors read when copied).

    Non-tensor values under a weight name get a spec with a ``problem`` (the loader refuses
    them with that reason, before anything is copied).
    """
    source = torch_file(probe)
    specs, keys = {}, {}
    for name, stub in stubs.items():
        if is_stub(stub):
            specs[name], keys[name] = tensor_spec(stub), storage_key(stub)
        else:
            specs[name] = TensorSpec((), None, problem=f"a {type(stub).__name__}, not a tensor")
    if not source.is_zip:
        return _legacy_weights(source, stubs, specs, notes)

    def damaged(names: list[str]) -> list[str]:
        bad = source.damaged_storages([stubs[name] for name in names if is_stub(stubs[name])])
        return [name for name in names if _keys_of(stubs[name]) & bad]

    return WeightSet(
        specs, lambda name: source.tensor(stubs[name]), storage_keys=keys, notes=notes, checksums=damaged
    )


def _keys_of(stub: Any) -> set[str]:
    return {placeholder.key for placeholder in stub.storages()}


def _legacy_weights(source: TorchFile, stubs: Mapping[str, Any], specs, notes) -> WeightSet:
    """Pre-1.6 files: torch.load reads them whole; the stubs' paths find each tensor in the result."""
    from ..format import model_state_of

    def read(name: str) -> torch.Tensor:
        loaded = model_state_of(source.materialize(source.structure()))
        if loaded is None or name not in loaded:
            raise KeyError(name)
        return loaded[name]

    return WeightSet(specs, read, notes=notes)
