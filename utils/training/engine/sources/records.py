"""Cleaning the metadata a file carries into the record's typed fields (one place for every source).

A record's values come from JSON or a pickle that anyone could have written. Each
function keeps what has the expected type and range and drops the rest, so a view
never meets a 400-digit integer, a NaN loss or a string where a number belongs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import format as fmt
from ..naming import parse_checkpoint_filename
from ..record import METRIC_NAMES, CheckpointRecord, clean_float, clean_int, clean_run_id, clean_timestamp
from .base import Probe

__all__ = [
    "clean_config",
    "clean_data_state",
    "clean_history",
    "clean_metrics",
    "clean_model_settings",
    "record_from_fields",
]

_MAX_ROWS = 100_000  # epochs in a history
_MAX_KEYS = 4_096  # entries kept from one row, config section or statistics table
_MAX_KEY_CHARS = 256
_COUNTERS = ("epoch", "global_step", "weight_change_from_step")
# GPTConfig's settings, by the type a file must give them in (utils.model.gpt.GPTConfig).
_SIZES = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
_ACTIVATIONS = ("gelu", "gelu_tanh")


def _keyed(raw: Any) -> list[tuple[str, Any]]:
    """The (key, value) pairs of a mapping whose keys are short strings (others dropped), capped."""
    if not isinstance(raw, Mapping):
        return []
    pairs = []
    for key, value in raw.items():
        if isinstance(key, str) and len(key) <= _MAX_KEY_CHARS:
            pairs.append((key, value))
            if len(pairs) >= _MAX_KEYS:
                break
    return pairs


def clean_metrics(raw: Any) -> dict[str, float | None]:
    """Every name of METRIC_NAMES (a finite float or None), then extra numeric metrics."""
    pairs = dict(_keyed(raw))
    metrics = {name: clean_float(pairs.pop(name, None)) for name in METRIC_NAMES}
    metrics.update(
        (key, clean_float(value)) for key, value in pairs.items() if clean_float(value) is not None
    )
    return metrics


def clean_history(raw: Any) -> tuple[dict[str, Any], ...]:
    """Per-epoch rows: counters as ints, numbers as floats, one level of ``name -> number`` tables
    (per-tensor statistics); anything else dropped."""
    if not isinstance(raw, (list, tuple)):
        return ()
    rows = []
    for row in raw[:_MAX_ROWS]:
        if not isinstance(row, Mapping):
            continue
        clean: dict[str, Any] = {}
        for key, value in _keyed(row):
            if key in _COUNTERS:
                clean[key] = clean_int(value)
            elif isinstance(value, Mapping):
                clean[key] = {name: clean_float(number) for name, number in _keyed(value)}
            elif value is None or clean_float(value) is not None:
                clean[key] = clean_float(value)
        rows.append(clean)
    return tuple(rows)


def clean_config(raw: Any) -> dict[str, Any]:
    """The stored config: string keys only; its sections (``model``, ``training``) copied one level deep."""
    config = {}
    for key, value in _keyed(raw):
        config[key] = dict(_keyed(value)) if isinstance(value, Mapping) else value
    return config


def clean_data_state(raw: Any) -> dict[str, int | None] | None:
    """The data position (``epoch``, ``batch_in_epoch``, ``batches_per_epoch``, ``seed``, ...) as ints."""
    pairs = _keyed(raw)
    if not isinstance(raw, Mapping):
        return None
    return {key: clean_int(value) for key, value in pairs if isinstance(value, (int, float)) or value is None}


def clean_model_settings(raw: Any) -> dict[str, Any]:
    """GPTConfig's settings found in ``raw`` (another tool's model arguments or hyperparameters),
    each of the right type and range; anything else (other keys, odd values) dropped."""
    pairs = dict(_keyed(raw))
    settings: dict[str, Any] = {key: clean_int(pairs[key]) for key in _SIZES if clean_int(pairs.get(key))}
    dropout = pairs.get("dropout")
    if clean_float(dropout) is not None and 0.0 <= dropout < 1.0:
        settings["dropout"] = float(dropout)
    if isinstance(pairs.get("bias"), bool):
        settings["bias"] = pairs["bias"]
    if pairs.get("activation") in _ACTIVATIONS:
        settings["activation"] = pairs["activation"]
    return settings


def record_from_fields(
    probe: Probe, raw: Mapping[str, Any], *, kind: str, source: str, facts: Mapping[str, Any], notes=()
) -> CheckpointRecord:
    """A record from a checkpoint dict or our JSON record (any value cleaned), filled from the
    file name where the file lacks epoch, step or time."""
    epoch = clean_int(raw.get(fmt.EPOCH_KEY))
    step = clean_int(raw.get(fmt.GLOBAL_STEP_KEY))
    timestamp = clean_timestamp(raw.get(fmt.TIMESTAMP_KEY))
    parsed = parse_checkpoint_filename(probe.path.name)
    if parsed is not None:
        epoch = parsed.epoch if epoch is None else epoch
        step = parsed.global_step if step is None else step
        timestamp = timestamp or parsed.timestamp.isoformat(timespec="seconds")
    return CheckpointRecord(
        path=probe.path,
        kind=kind,
        epoch=epoch,
        global_step=step,
        timestamp=timestamp,
        metrics=clean_metrics(raw.get(fmt.METRICS_KEY)),
        history=clean_history(raw.get(fmt.HISTORY_KEY)),
        config=clean_config(raw.get(fmt.CONFIG_KEY)),
        data_state=clean_data_state(raw.get(fmt.DATA_STATE_KEY)),
        has_optimizer=bool(facts.get("has_optimizer")),
        has_rng_state=bool(facts.get("has_rng_state")),
        tensor_count=facts.get("tensor_count"),
        size_bytes=probe.size,
        format_version=clean_int(raw.get(fmt.FORMAT_VERSION_KEY)),
        source=source,
        run_id=clean_run_id(raw.get(fmt.RUN_ID_KEY)),
        link_target=probe.link_target,
        notes=tuple(notes),
    )
