"""The checkpoint format: every key, its meaning, and the format version.

A checkpoint is a flat dict saved with ``torch.save``. It holds only tensors,
numbers, strings, bools, None, lists, tuples and dicts, so that
``torch.load(path, weights_only=True)`` reads it without unpickling any code.
docs/checkpoint-format.md lists the same keys for users.

Besides the pickled dict, every checkpoint written by this engine carries a
small JSON record inside its zip archive (``METADATA_RECORD``) with the
epoch, step, metrics, history and config, so that the listing reads a few
hundred bytes instead of the tensors.

Three kinds of file are understood:

* ``full``   -- written by this engine (has ``format_version``).
* ``legacy`` -- written by the notebook's earlier training cell: a dict with
  ``model_state_dict``, ``epoch``, ``global_step``, ``timestamp``, ``metrics``
  and no ``format_version``.
* ``bare``   -- a plain ``state_dict`` (only tensors), e.g. ``torch.save(model.state_dict())``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from typing import Any

import torch

from .text import short_repr

__all__ = [
    "FORMAT_VERSION",
    "METADATA_RECORD",
    "ARCHIVE_FACTS_KEY",
    "FORMAT_VERSION_KEY",
    "MODEL_STATE_KEY",
    "OPTIMIZER_STATE_KEY",
    "SCHEDULER_STATE_KEY",
    "SCALER_STATE_KEY",
    "EPOCH_KEY",
    "GLOBAL_STEP_KEY",
    "TIMESTAMP_KEY",
    "METRICS_KEY",
    "HISTORY_KEY",
    "CONFIG_KEY",
    "RNG_STATE_KEY",
    "DATA_STATE_KEY",
    "STEP_LOSSES_KEY",
    "RUN_ID_KEY",
    "WEIGHT_CHANGE_KEY",
    "LAYER_CHANGE_KEY",
    "WEIGHT_CHANGE_FROM_STEP_KEY",
    "METRIC_NAMES",
    "METADATA_KEYS",
    "build_checkpoint",
    "checkpoint_kind",
    "content_facts",
    "describe_object",
    "metadata_of",
    "model_state_of",
    "now_iso",
    "count_leaves",
]

# Bumped when a key changes meaning; readers accept every version up to this one.
FORMAT_VERSION = 1
# Name of the JSON member appended to the zip archive (inside its top folder).
METADATA_RECORD = "checkpoint_meta.json"
# In the JSON record: facts about the zip it sits in (entries before the record, data.pkl's
# CRC-32 and size, the bytes of all tensor data), so a reader can confirm the record belongs
# to this file from two directory entries. Records written before this key existed lack it.
ARCHIVE_FACTS_KEY = "archive"

FORMAT_VERSION_KEY = "format_version"  # int; absent in legacy files
MODEL_STATE_KEY = "model_state_dict"  # {name: tensor}, the model's weights and buffers
OPTIMIZER_STATE_KEY = "optimizer_state_dict"  # optimizer.state_dict(), or None
SCHEDULER_STATE_KEY = "scheduler_state_dict"  # LR scheduler state, present when one is used
SCALER_STATE_KEY = "scaler_state_dict"  # torch.amp.GradScaler state, present with mixed precision
EPOCH_KEY = "epoch"  # int, 0-based index of the epoch the checkpoint was written in
GLOBAL_STEP_KEY = "global_step"  # int, optimizer steps taken so far
TIMESTAMP_KEY = "timestamp"  # str, ISO-8601 local time of the save
METRICS_KEY = "metrics"  # {"train_loss", "val_loss", "learning_rate"}: floats or None
HISTORY_KEY = "history"  # list of per-epoch metric dicts, oldest first
CONFIG_KEY = "config"  # {"model": {...}, "training": {..., "init_from": ...}}: enough to rebuild the model
RNG_STATE_KEY = "rng_state"  # random generator states (tensors / plain lists), for exact resume
DATA_STATE_KEY = "data_state"  # {"epoch", "batch_in_epoch", "batches_per_epoch", "seed"}
STEP_LOSSES_KEY = "step_losses"  # float64 tensor: the training loss of every step so far
# str: one training run's id (a resume keeps it). Retention deletes only files of the run that is
# saving, so another run's checkpoints -- or a file crafted to outrank them -- never cost a checkpoint.
RUN_ID_KEY = "run_id"
# Inside each history row (docs/checkpoint-format.md, "history"): how far the weights moved in the epoch.
# {parameter name: ||end - start|| / ||start||, or None where ||start|| = 0 (undefined)}
WEIGHT_CHANGE_KEY = "weight_change"
LAYER_CHANGE_KEY = "layer_change"  # {layer label ("embeddings", "block 0", ...): the same over the layer}
WEIGHT_CHANGE_FROM_STEP_KEY = "weight_change_from_step"  # int: the change covers only this step onwards

METRIC_NAMES = ("train_loss", "val_loss", "learning_rate")
# The keys copied into the JSON metadata record (small values only).
METADATA_KEYS = (
    FORMAT_VERSION_KEY,
    EPOCH_KEY,
    GLOBAL_STEP_KEY,
    TIMESTAMP_KEY,
    METRICS_KEY,
    HISTORY_KEY,
    CONFIG_KEY,
    DATA_STATE_KEY,
    RUN_ID_KEY,
)


def now_iso() -> str:
    """The current local time as an ISO-8601 string with seconds."""
    return _dt.datetime.now().isoformat(timespec="seconds")


def _clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Floats for the known metrics (None when absent or not finite), extras kept."""
    cleaned: dict[str, float | None] = {}
    metrics = dict(metrics or {})
    for name in METRIC_NAMES:
        value = metrics.pop(name, None)
        cleaned[name] = _finite_or_none(value)
    for name, value in metrics.items():  # extra metrics a user logs (numbers or one-element tensors)
        if _is_number(value):
            cleaned[str(name)] = _finite_or_none(value)
    return cleaned


def _is_number(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_complex()
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.item()
    value = float(value)
    return value if math.isfinite(value) else None


def build_checkpoint(
    *,
    model_state: Mapping[str, torch.Tensor],
    epoch: int,
    global_step: int,
    metrics: Mapping[str, Any] | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
    scheduler_state: Mapping[str, Any] | None = None,
    scaler_state: Mapping[str, Any] | None = None,
    history: list | None = None,
    config: Mapping[str, Any] | None = None,
    rng_state: Mapping[str, Any] | None = None,
    data_state: Mapping[str, Any] | None = None,
    step_losses: torch.Tensor | None = None,
    timestamp: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict in the current format.

    Optional parts that are ``None`` are left out (``optimizer_state_dict`` is
    always present, possibly None, because the legacy format had it).

    Raises:
        ValueError: ``model_state`` is empty (such a file could never be loaded or resumed).
    """
    if not model_state:
        raise ValueError(
            "model_state is empty: a checkpoint needs the model's weights (pass the model or "
            "model.state_dict(), not an empty dict)"
        )
    checkpoint: dict[str, Any] = {
        FORMAT_VERSION_KEY: FORMAT_VERSION,
        EPOCH_KEY: int(epoch),
        GLOBAL_STEP_KEY: int(global_step),
        TIMESTAMP_KEY: timestamp or now_iso(),
        METRICS_KEY: _clean_metrics(metrics),
        HISTORY_KEY: [_clean_history_row(row) for row in (history or [])],
        CONFIG_KEY: dict(config or {}),
        MODEL_STATE_KEY: dict(model_state),
        OPTIMIZER_STATE_KEY: optimizer_state,
    }
    optional = {
        SCHEDULER_STATE_KEY: scheduler_state,
        SCALER_STATE_KEY: scaler_state,
        RNG_STATE_KEY: rng_state,
        DATA_STATE_KEY: dict(data_state) if data_state is not None else None,
        STEP_LOSSES_KEY: step_losses,
        RUN_ID_KEY: str(run_id) if run_id is not None else None,
    }
    checkpoint.update({key: value for key, value in optional.items() if value is not None})
    return checkpoint


def _clean_history_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A history row: its metrics, counters and weight-change maps, each with checked types."""
    row = dict(row)
    changes = {key: row.pop(key) for key in (WEIGHT_CHANGE_KEY, LAYER_CHANGE_KEY) if key in row}
    cleaned = dict(_clean_metrics(row), **_row_counters(row))
    for key, value in changes.items():
        if isinstance(value, Mapping):  # {name: float or None}; anything else in a row is dropped
            cleaned[key] = {
                str(name): _finite_or_none(v) if _is_number(v) else None for name, v in value.items()
            }
    return cleaned


def _row_counters(row: Mapping[str, Any]) -> dict[str, int]:
    """The integer counters of a history row (epoch, global_step, weight_change_from_step)."""
    keys = (EPOCH_KEY, GLOBAL_STEP_KEY, WEIGHT_CHANGE_FROM_STEP_KEY)
    return {k: int(row[k]) for k in keys if row.get(k) is not None}


def checkpoint_kind(obj: Any, tensor_type: type = torch.Tensor) -> str | None:
    """``"full"``, ``"legacy"``, ``"bare"``, or ``None`` when ``obj`` holds no weights.

    Args:
        obj: a loaded checkpoint (or any object).
        tensor_type: what counts as a tensor; ``safe_unpickle.TensorStub`` for a structure
            unpickled without its tensor data.

    Returns:
        None also for an empty ``model_state_dict``: there is nothing to load or resume.
    """
    if not isinstance(obj, Mapping) or not obj:
        return None
    weights = obj.get(MODEL_STATE_KEY)
    if isinstance(weights, Mapping):
        if not weights:
            return None
        return "full" if FORMAT_VERSION_KEY in obj else "legacy"
    if all(isinstance(k, str) and isinstance(v, tensor_type) for k, v in obj.items()):
        return "bare"
    return None


def model_state_of(obj: Any, tensor_type: type = torch.Tensor) -> Mapping[str, torch.Tensor] | None:
    """The weights inside a loaded checkpoint of any kind; ``None`` when there are none.

    ``tensor_type`` as for :func:`checkpoint_kind`.
    """
    kind = checkpoint_kind(obj, tensor_type)
    if kind is None:
        return None
    return obj if kind == "bare" else obj[MODEL_STATE_KEY]


def content_facts(obj: Mapping[str, Any], tensor_type: type = torch.Tensor) -> dict[str, Any]:
    """``has_optimizer``, ``has_rng_state`` and ``tensor_count`` of a checkpoint (any kind).

    One definition for the saver's JSON record and for files read without it: a part
    counts as present when it is neither None nor empty.

    Args:
        obj: the checkpoint dict (or a bare state_dict).
        tensor_type: what counts as a tensor (see :func:`checkpoint_kind`).
    """
    return {
        "has_optimizer": _holds(obj.get(OPTIMIZER_STATE_KEY)),
        "has_rng_state": _holds(obj.get(RNG_STATE_KEY)),
        "tensor_count": count_leaves(obj, tensor_type),
    }


def _holds(part: Any) -> bool:
    if isinstance(part, (Mapping, list, tuple)):
        return len(part) > 0
    return part is not None


def describe_object(obj: Any, tensor_type: type = torch.Tensor) -> str:
    """What a file holds instead of weights, in words (``a dict with keys ['epoch']``)."""
    if (
        isinstance(obj, Mapping)
        and isinstance(obj.get(MODEL_STATE_KEY), Mapping)
        and not obj[MODEL_STATE_KEY]
    ):
        return f"an empty {MODEL_STATE_KEY!r}"
    if isinstance(obj, Mapping):
        keys = ", ".join(short_repr(k) for k in list(obj)[:6])
        return f"a dict with keys [{keys}{', ...' if len(obj) > 6 else ''}]" if obj else "an empty dict"
    if isinstance(obj, tensor_type):
        shape = getattr(obj, "shape", None)
        return f"a single tensor of shape {list(shape)}" if shape is not None else "a single tensor"
    return f"a {type(obj).__name__}"


def metadata_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The small, JSON-serialisable part of a checkpoint (what the listing shows)."""
    meta = {key: obj[key] for key in METADATA_KEYS if key in obj}
    meta.setdefault(METRICS_KEY, {})
    return meta


def count_leaves(obj: Any, leaf_type: type) -> int:
    """How many ``leaf_type`` values a nest of dicts, lists and tuples holds (the tensor count)."""
    if isinstance(obj, leaf_type):
        return 1
    if isinstance(obj, Mapping):
        return sum(count_leaves(value, leaf_type) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(count_leaves(value, leaf_type) for value in obj)
    return 0
