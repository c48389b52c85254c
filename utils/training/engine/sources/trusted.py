"""The explicit opt-in: a file whose pickle needs arbitrary code, loaded because the user trusts it.

Only ``load_model_weights(..., trust_pickle=True)`` comes here, after the restricted reader
refused the file. ``torch.load(weights_only=False)`` runs whatever the pickle says; the
user said the file's source is trusted. A whole pickled ``nn.Module`` counts as its
``state_dict()`` (kind "module").
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .. import format as fmt
from ..errors import CorruptCheckpointError, NotACheckpointError
from ..record import CheckpointRecord
from ..torchfile import DAMAGED_FIX, ZIP_MAGIC
from .base import Probe, TensorSpec, WeightSet
from .records import record_from_fields

__all__ = ["trusted_checkpoint"]


def trusted_checkpoint(probe: Probe) -> tuple[CheckpointRecord, WeightSet]:
    """(record, weights) of a trusted pickle file, loaded onto the CPU (memory-mapped when a zip)."""
    obj = _load(probe.path, probe.head.startswith(ZIP_MAGIC))
    if isinstance(obj, torch.nn.Module):
        weights, kind, raw = obj.state_dict(), "module", {}
    else:
        kind = fmt.checkpoint_kind(obj)
        if kind is None:
            raise NotACheckpointError(
                probe.path,
                f"is a readable PyTorch file, but holds {fmt.describe_object(obj)}, not model weights",
                expected="a checkpoint dict with 'model_state_dict', or a state_dict of tensors",
                fix="pick a checkpoint written by save_checkpoint, or save model.state_dict()",
            )
        weights = fmt.model_state_of(obj)
        raw = obj if kind != "bare" else {}
    facts = fmt.content_facts(raw or weights)
    record = record_from_fields(probe, raw, kind=kind, source="pickle", facts=facts)
    specs = {
        name: TensorSpec(tuple(value.shape), value.dtype) if isinstance(value, torch.Tensor)
        else TensorSpec((), None, problem=f"a {type(value).__name__}, not a tensor")
        for name, value in weights.items()
    }  # fmt: skip
    return record, WeightSet(specs, weights.__getitem__, storage_keys=_storage_keys(weights))


def _storage_keys(weights) -> dict:
    return {
        name: (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), value.stride())
        for name, value in weights.items()
        if isinstance(value, torch.Tensor) and value.numel()
    }


def _load(path: Path, is_zip: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
        except Exception as error:  # a trusted file can still be damaged
            raise CorruptCheckpointError(
                path, f"cannot be read even with trust_pickle=True ({type(error).__name__})", fix=DAMAGED_FIX
            ) from error
