"""The files of a Hugging Face model folder: config, weight files (one, or shards by index), trainer state.

``save_pretrained`` writes ``config.json`` and one of ``model.safetensors``,
``model.safetensors.index.json`` + shards, ``pytorch_model.bin`` (older versions) or
``pytorch_model.bin.index.json`` + shards; ``transformers.Trainer`` adds
``trainer_state.json`` (the step, the epoch, the evaluation losses) to its
``checkpoint-N`` folders. Every file is read through the boundary with a cap, parsed only
when its count of JSON objects and arrays fits what such a file holds (``untrusted.load_json``),
and every value is type-checked before use; an index may only name files of its own folder,
at most :data:`MAX_SHARDS` of them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, CorruptCheckpointError, NotACheckpointError
from ..record import clean_float, clean_int
from ..text import json_type, safe_text, short_repr
from ..untrusted import LIMITS, load_json, read_small_file
from .base import WeightSet

__all__ = [
    "CONFIG",
    "CONFIG_CONTAINERS",
    "MAX_SHARDS",
    "WEIGHT_FILES",
    "read_json",
    "merged_weights",
    "trainer_facts",
    "weight_files",
]

CONFIG = "config.json"
# In transformers' order of preference when a folder holds several.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TRAINER_STATE = "trainer_state.json"
# The JSON objects and arrays each file of a folder holds, with a wide margin (load_json counts
# them before parsing): GPT-2's config.json has 4; an index 2 (its metadata and a flat weight_map);
# trainer_state.json one log_history row per logging step.
CONFIG_CONTAINERS = 1_000
_INDEX_CONTAINERS = 64
_TRAINER_CONTAINERS = 200_000
MAX_SHARDS = 10_000  # distinct files an index may name (GPT-2 xl: 1; the largest hub models: a few hundred)
_DO_NOT_USE = "do not use this file: transformers never writes one like it (a crafted or damaged file)"
_REDOWNLOAD = "download or copy the folder again (every file that model.safetensors.index.json lists)"


def read_json(path: Path, what: str, max_containers: int = CONFIG_CONTAINERS) -> Any:
    """A small JSON file of the folder, parsed (capped at ``LIMITS.text_file_bytes`` bytes and
    ``max_containers`` JSON objects and arrays).

    Raises:
        CheckpointError: missing, unreadable or over the cap; CorruptCheckpointError: not JSON, or
            more JSON objects and arrays than ``max_containers`` (refused before parsing).
    """
    data = read_small_file(path, LIMITS.text_file_bytes)
    try:
        return load_json(data, max_containers)
    except ValueError as error:  # UnicodeDecodeError and json's errors included
        if str(error).startswith("refused:"):  # over the budget or too deep: never parsed
            raise CorruptCheckpointError(
                path,
                f"refused: the folder's {what} is not parsed: {str(error).removeprefix('refused: ')}",
                expected=f"a {what} as transformers writes it",
                fix=_DO_NOT_USE,
            ) from None
        raise CorruptCheckpointError(
            path, f"is not valid JSON (the folder's {what})", fix="download or copy the folder again"
        ) from None


def weight_files(folder: Path, entries: tuple[str, ...]) -> list[Path]:
    """The weight files of the folder, in the order to read them (the shards an index names).

    Raises:
        NotACheckpointError: the folder holds a config but no weights.
        CorruptCheckpointError: an index is malformed, names a file outside the folder, or names
            a shard the folder lacks.
    """
    name = next((name for name in WEIGHT_FILES if name in entries), None)
    if name is None:
        raise NotACheckpointError(
            folder,
            f"holds {CONFIG} but no weights (found: {safe_text(', '.join(entries[:8]), 200) or 'nothing'})",
            expected=f"{CONFIG} with {WEIGHT_FILES[0]}, {WEIGHT_FILES[1]} + its shards, or {WEIGHT_FILES[2]}",
            fix="download or copy the weights too (save_pretrained writes both), or pick another folder",
        )
    if not name.endswith(".index.json"):
        return [folder / name]
    return _shards(folder / name, entries)


def _shards(index: Path, entries: tuple[str, ...]) -> list[Path]:
    weight_map = _weight_map(index)
    shards = list(dict.fromkeys(weight_map.values()))  # every value is a str: hashable
    if len(shards) > MAX_SHARDS:
        raise CorruptCheckpointError(
            index,
            f"refused: names {len(shards):,} distinct shard files, more than the {MAX_SHARDS:,} a model has",
            expected="a save_pretrained shard index",
            fix=_DO_NOT_USE,
        )
    outside = [s for s in shards if "/" in s or "\\" in s or s in ("", ".", "..")]
    if outside:
        raise CorruptCheckpointError(
            index,
            f"names shard {safe_text(outside[0], 80)!r}, which is not a file of its own folder: refused",
            expected="shard file names in the same folder",
            fix=_REDOWNLOAD,
        )
    present = set(entries)  # one hash per name: a long index against a big folder stays linear
    missing = [s for s in shards if s not in present]
    if missing:
        raise CorruptCheckpointError(
            index,
            f"names {len(missing):,} shard(s) that the folder lacks: {safe_text(', '.join(missing[:4]), 300)}",
            expected="every shard the index names, beside it",
            fix=_REDOWNLOAD,
        )
    return [index.parent / shard for shard in shards]


def _weight_map(index: Path) -> dict[str, str]:
    """The index's ``weight_map`` (tensor name -> shard file), every value checked to be a string."""
    data = read_json(index, "shard index", _INDEX_CONTAINERS)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CorruptCheckpointError(
            index,
            "has no weight_map (name -> shard file)",
            expected="a save_pretrained shard index",
            fix=_REDOWNLOAD,
        )
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise CorruptCheckpointError(
                index,
                f"maps tensor {safe_text(name, 80)!r} to {short_repr(shard)} (a JSON "
                f"{json_type(shard)}), not a shard file name",
                expected="a save_pretrained shard index: weight_map of tensor name -> shard file name",
                fix=_REDOWNLOAD,
            )
    return weight_map


def merged_weights(parts: list[WeightSet], close: Callable[[], None]) -> WeightSet:
    """One WeightSet over the shards' (each name read from the first shard holding it)."""
    if len(parts) == 1:
        only = parts[0]
        return WeightSet(
            only.specs(),
            only.tensor,
            storage_keys={name: only.storage_key(name) for name in only},
            close=close,
            checksums=_checksums([only], {name: 0 for name in only}),
        )
    owner: dict[str, int] = {}
    for index, part in enumerate(parts):
        for name in part:
            owner.setdefault(name, index)
    keys: dict[str, Hashable] = {
        name: (index, parts[index].storage_key(name)) for name, index in owner.items()
    }
    return WeightSet(
        {name: parts[index].spec(name) for name, index in owner.items()},
        lambda name: parts[owner[name]].tensor(name),
        storage_keys=keys,
        close=close,
        checksums=_checksums(parts, owner),
    )


def _checksums(parts: list[WeightSet], owner: dict[str, int]):
    if all(part.damaged([]) is None for part in parts):
        return None

    def damaged(names: list[str]) -> list[str]:
        bad: list[str] = []
        for index, part in enumerate(parts):
            bad.extend(part.damaged([n for n in names if owner[n] == index]) or [])
        return bad

    return damaged


def trainer_facts(folder: Path, entries: tuple[str, ...]) -> dict[str, Any]:
    """``global_step``, ``epoch`` (0-based, of the epoch the save happened in) and ``val_loss`` from
    ``transformers.Trainer``'s ``trainer_state.json``; empty when the folder has none or it is unreadable."""
    if _TRAINER_STATE not in entries:
        return {}
    with contextlib.suppress(CheckpointError):
        state = read_json(folder / _TRAINER_STATE, "trainer state", _TRAINER_CONTAINERS)
        if isinstance(state, dict):
            return _facts(state)
    return {}


def _facts(state: dict[str, Any]) -> dict[str, Any]:
    step = clean_int(state.get("global_step"))
    epochs = clean_float(state.get("epoch"))  # epochs done, as a float (1.5: half-way through the second)
    epoch = max(0, math.ceil(epochs) - 1) if epochs is not None and epochs < 2**62 else None
    losses = [
        row for row in state.get("log_history", [])[:100_000] if isinstance(row, dict) and "eval_loss" in row
    ] if isinstance(state.get("log_history"), list) else []  # fmt: skip
    val_loss = clean_float(losses[-1].get("eval_loss")) if losses else None
    return {"global_step": step, "epoch": epoch, "val_loss": val_loss}
