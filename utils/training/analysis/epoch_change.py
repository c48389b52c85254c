"""The per-epoch record of how far each weight tensor moved, for the training loop.

At each epoch start the loop keeps a copy of the parameters in host memory (not on the
GPU: its memory is the scarce one; Cell 21 counts the copy). At the epoch end each
parameter's ``||theta_end - theta_start|| / ||theta_start||`` goes into the epoch's history
row (``weight_change``), with the same statistic over each layer (``layer_change``). The
history travels in every checkpoint's JSON record, so the picture survives retention.

A run resumed in the middle of an epoch has no copy of that epoch's start in memory. The
weights at an epoch start are exactly those of the previous epoch's end checkpoint, so
:meth:`EpochStart.for_epoch` reads that file when it still exists and belongs to the run
(same epoch, step and validation loss): the record is then bit-for-bit the uninterrupted
run's. When it does not (retention removed it, or the run was in its first epoch), the
record measures from the resume step instead and says so with ``weight_change_from_step``.

Under FSDP (``fully_shard``) each process keeps and compares only its own shards; the sums of
squares are added over the ranks, so every process records the whole tensors' numbers. A sharded
run resumed mid-epoch measures from the resume step (a file holds whole tensors, not shards).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from utils.training.engine import format as fmt
from utils.training.engine.errors import CheckpointError
from utils.training.engine.prefixes import unwrap_model

from . import _weights
from .groups import combine, layer_of, relative
from .norms import PIECE, distances_and_norm

__all__ = ["EpochStart", "SIGNIFICANT_DIGITS", "snapshot_bytes"]

# Recorded values keep 4 significant digits: a colour or a bar shows 2-3, float32 norms over
# millions of elements are not exact beyond ~6, and GPT-2's 148 values fit in ~6.7 KB of JSON a row
# (~9 KB unrounded).
SIGNIFICANT_DIGITS = 4
_DEVICE_PIECE = 1 << 22  # on a GPU, bigger pieces: fewer host-to-device copies


class EpochStart:
    """The parameters at an epoch start, on the CPU, and where they were taken.

    Args:
        tensors: parameter name -> CPU tensor (the model's dtype).
        from_step: None when these are the epoch's start weights; else the global step they were
            taken at (a run resumed mid-epoch without the epoch-start checkpoint).
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], from_step: int | None = None) -> None:
        self.tensors = dict(tensors)
        self.from_step = from_step

    @classmethod
    def of_model(cls, model: torch.nn.Module, from_step: int | None = None) -> EpochStart:
        """A host-memory copy of ``model``'s parameters (each tied tensor once)."""
        _reshard(model)
        with torch.no_grad():
            tensors = {
                name: _local(param.detach()).to("cpu", copy=True)
                for name, param in unwrap_model(model).named_parameters()
            }
        return cls(tensors, from_step)

    @classmethod
    def for_epoch(
        cls,
        model: torch.nn.Module,
        *,
        epoch: int,
        first_batch: int,
        global_step: int,
        history: list[Mapping[str, Any]],
        folders: Iterable[str | os.PathLike],
    ) -> EpochStart:
        """The start weights of ``epoch`` for a loop about to train its batch ``first_batch``.

        Args:
            model: the model, holding the weights after ``global_step`` steps.
            epoch, first_batch, global_step: the loop's position (``first_batch`` > 0: resumed mid-epoch).
            history: the run's rows so far; the last one is the previous epoch's.
            folders: where the previous epoch's end checkpoint may be (checkpoint and resume folders).

        Returns:
            The exact epoch-start weights, or (mid-epoch, no such file) the current ones with
            ``from_step=global_step``.
        """
        if first_batch == 0:
            return cls.of_model(model)
        if _sharded(model):  # a file holds whole tensors, this process a shard: measure from here
            return cls.of_model(model, from_step=global_step)
        path = _epoch_start_file(folders, epoch, global_step - first_batch, history)
        if path is not None:
            start = cls._from_file(path, model)
            if start is not None:
                return start
        return cls.of_model(model, from_step=global_step)

    @classmethod
    def _from_file(cls, path: Path, model: torch.nn.Module) -> EpochStart | None:
        """The model's parameters as stored in ``path`` (copied: retention may delete the file)."""
        params = dict(unwrap_model(model).named_parameters())
        try:
            with _weights.open_checkpoint_weights(path) as weights:
                if any(name not in weights or weights[name].shape != p.shape for name, p in params.items()):
                    return None
                return cls({name: weights[name].to(p.dtype, copy=True) for name, p in params.items()})
        except CheckpointError:  # damaged or removed meanwhile: measure from the resume step instead
            return None

    def row_fields(self, model: torch.nn.Module) -> dict[str, Any]:
        """The history row's fields: ``weight_change``, ``layer_change`` (and ``weight_change_from_step``).

        Raises:
            KeyError: ``model`` lacks a parameter of the snapshot (the model was swapped mid-epoch).
        """
        _reshard(model)
        params = dict(unwrap_model(model).named_parameters())
        norms = {}
        with torch.no_grad():
            for name, start in self.tensors.items():
                current = _local(params[name].detach())  # compared where it lives: no full-size copy
                piece = PIECE if current.device.type == "cpu" else _DEVICE_PIECE
                [distance], norm = distances_and_norm(start, [current], device=current.device, piece=piece)
                norms[name] = (distance, norm)
        if norms and _sharded(model):
            norms = _summed_over_ranks(norms, current.device)
        fields: dict[str, Any] = {
            fmt.WEIGHT_CHANGE_KEY: {name: _rounded(relative(*pair)) for name, pair in norms.items()},
            fmt.LAYER_CHANGE_KEY: {label: _rounded(v) for label, v in combine(norms, layer_of).items()},
        }
        if self.from_step is not None:
            fields[fmt.WEIGHT_CHANGE_FROM_STEP_KEY] = self.from_step
        return fields


def snapshot_bytes(model: torch.nn.Module) -> int:
    """Host memory the epoch-start copy takes: every parameter once (tied tensors once; under
    FSDP this process's shards)."""
    return sum(_local(p).numel() * p.element_size() for p in unwrap_model(model).parameters())


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of a parameter this process holds: a DTensor's shard (FSDP), else the tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


def _reshard(model: torch.nn.Module) -> None:
    """Under FSDP2, register every module's sharded parameters again: after a forward without a
    backward (evaluation) the root keeps whole, unsharded tensors in their place, and the record
    compares shards. Values are unchanged; the next forward gathers them as it always does."""
    fsdp = sys.modules.get("torch.distributed.fsdp")  # never imported: no module can be sharded
    kind = getattr(fsdp, "FSDPModule", None)
    if kind is None:
        return
    for module in unwrap_model(model).modules():
        if isinstance(module, kind):
            module.reshard()


def _sharded(model: torch.nn.Module) -> bool:
    return any(callable(getattr(p, "to_local", None)) for p in unwrap_model(model).parameters())


def _summed_over_ranks(norms: dict[str, tuple[float, float]], device: torch.device) -> dict:
    """Whole-tensor norms from every process's shard norms: the squares summed over the ranks."""
    import torch.distributed as dist

    squares = torch.tensor([[d * d, n * n] for d, n in norms.values()], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(squares)
    return {
        name: (math.sqrt(d2), math.sqrt(n2)) for name, (d2, n2) in zip(norms, squares.tolist(), strict=True)
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _epoch_start_file(
    folders: Iterable[str | os.PathLike], epoch: int, start_step: int, history: list[Mapping[str, Any]]
) -> Path | None:
    """The previous epoch's end checkpoint of this run: epoch, step and validation loss all agree."""
    if epoch < 1 or not history or history[-1].get("epoch") != epoch - 1:
        return None  # the first epoch starts from weights no file holds
    val_loss = history[-1].get("val_loss")
    # Imported here: utils.training imports this module, and an eager import of the engine's recovery
    # module would make `python -m utils.training.engine.recovery` warn that it ran it twice.
    from utils.training.engine.recovery import list_checkpoints

    for folder in dict.fromkeys(Path(f) for f in folders):
        for entry in list_checkpoints(folder, on_skip=None):
            if entry.epoch == epoch - 1 and entry.global_step == start_step and entry.val_loss == val_loss:
                return entry.path
    return None
