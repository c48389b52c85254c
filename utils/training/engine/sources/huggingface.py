"""Hugging Face GPT-2: a ``save_pretrained`` folder, a single safetensors file, or a torch-saved state_dict.

* A folder with ``config.json`` (``model_type`` ``gpt2``) and its weights
  (``model.safetensors``, a sharded ``model.safetensors.index.json``, or
  ``pytorch_model.bin``): the settings come from ``config.json``, the step, epoch and
  evaluation loss from ``trainer_state.json`` when ``transformers.Trainer`` wrote one.
* A single safetensors file in Hugging Face's names (the hub's ``GPT2Model`` layout
  ``h.0.attn...``, or ``transformer.h.0...`` with ``Conv1D`` weights).
* ``torch.save(hf_model.state_dict())``, with or without ``transformer.``.

A single file takes its settings from a ``config.json`` beside it, else from its shapes
(the head count must then be given); GPT-2's activation is assumed. Names and shapes are
translated by ``hf_layout``; everything is read through the boundary (``config.json`` and
indexes with a cap, safetensors headers checked before any tensor is mapped).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import format as fmt
from ..errors import CheckpointError, CorruptCheckpointError, NotACheckpointError
from ..record import CheckpointRecord
from ..safe_unpickle import TensorStub
from .base import Probe, Source, WeightSet
from .hf_folder import CONFIG, merged_weights, read_json, trainer_facts, weight_files
from .hf_layout import gpt_settings, hf_layout_of, to_our_weights
from .records import record_from_fields
from .safetensors_files import is_safetensors, open_safetensors, safetensors_of, safetensors_weights
from .torch_files import is_torch_file, structure_of, stub_weights, tensor_spec

__all__ = ["HuggingFaceSource"]

_NO_CONFIG_NOTE = (
    "no config.json beside the file: GPT-2's activation (gelu_new, tanh approximation) assumed, "
    "the other settings inferred from the tensor shapes"
)


class HuggingFaceSource(Source):
    """Hugging Face GPT-2 weights (see the module docstring for the three shapes they come in)."""

    kind = "huggingface"

    def claims(self, probe: Probe) -> bool:
        if probe.is_dir:
            return CONFIG in probe.entries
        return _file_layout(probe) is not None

    def read_record(self, probe: Probe) -> CheckpointRecord:
        if probe.is_dir:
            return _folder_record(probe)
        settings, notes = _sibling_settings(probe.path)
        facts = {"tensor_count": len(_file_specs(probe)), "has_optimizer": False, "has_rng_state": False}
        config = {"model": settings, "huggingface": {"weights": probe.path.name}}
        return _record(probe, config, facts, probe.size, notes, source="header")

    def open_weights(self, probe: Probe) -> WeightSet:
        if probe.is_dir:
            return _folder_weights(probe)
        layout = _file_layout(probe)
        if is_safetensors(probe):
            raw = safetensors_weights(safetensors_of(probe))
        else:
            raw = stub_weights(probe, structure_of(probe))
        return to_our_weights(raw, layout)


# -- single files -------------------------------------------------------------------------------


def _file_specs(probe: Probe) -> dict[str, Any]:
    """Name -> TensorSpec of a safetensors file's header, or of a torch file's bare state_dict ({} otherwise)."""
    if is_safetensors(probe):
        return safetensors_weights(safetensors_of(probe)).specs()
    if is_torch_file(probe):
        structure = structure_of(probe)
        if fmt.checkpoint_kind(structure, TensorStub) == "bare":
            return {name: tensor_spec(stub) for name, stub in structure.items()}
    return {}


def _file_layout(probe: Probe) -> str | None:
    try:
        return hf_layout_of(_file_specs(probe))
    except CheckpointError:  # damaged or foreign: another source (or the unknown-file error) says why
        return None


def _sibling_settings(path: Path) -> tuple[dict[str, Any], list[str]]:
    """Settings from the ``config.json`` beside a single file; GPT-2's defaults that shapes cannot show."""
    config = path.parent / CONFIG
    if not config.is_file():
        return {"bias": True, "activation": "gelu_tanh"}, [_NO_CONFIG_NOTE]
    settings, notes = gpt_settings(read_json(config, CONFIG), config)
    return settings, [f"model settings from {CONFIG} beside the file", *notes]


# -- folders ------------------------------------------------------------------------------------


def _folder_config(probe: Probe) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(settings, facts about the model for the record, notes) from the folder's config.json."""
    raw = read_json(probe.path / CONFIG, CONFIG)
    settings, notes = gpt_settings(raw, probe.path / CONFIG)
    about = {
        key: raw[key]
        for key in ("model_type", "transformers_version", "torch_dtype", "dtype")
        if isinstance(raw.get(key), str) and len(raw[key]) <= 64
    }
    if isinstance(raw.get("architectures"), list):
        about["architectures"] = ", ".join(a for a in raw["architectures"][:4] if isinstance(a, str))[:120]
    return settings, about, notes


def _folder_record(probe: Probe) -> CheckpointRecord:
    settings, about, notes = _folder_config(probe)
    files = weight_files(probe.path, probe.entries)
    count = size = 0
    for path in files:  # one shard open at a time: a listing never holds hundreds of files open
        with contextlib.ExitStack() as stack:
            (part,) = _open_parts([path], stack)
            count += len(part.weights)
            size += part.size
    if not count:
        raise CorruptCheckpointError(
            probe.path,
            f"holds a config.json, but its {len(files):,} weight file(s) hold no tensor",
            expected="a save_pretrained folder whose weight files hold the model's tensors",
            fix="download or copy the folder again (every file that model.safetensors.index.json lists)",
        )
    about["weights"] = ", ".join(path.name for path in files[:3]) + (", ..." if len(files) > 3 else "")
    facts = {"tensor_count": count, "has_optimizer": False, "has_rng_state": False}
    record = _record(probe, {"model": settings, "huggingface": about}, facts, size, notes, source="config")
    trained = trainer_facts(probe.path, probe.entries)
    if not trained:
        return record
    metrics = dict(record.metrics, val_loss=trained["val_loss"])
    return replace(record, epoch=trained["epoch"], global_step=trained["global_step"], metrics=metrics)


def _folder_weights(probe: Probe) -> WeightSet:
    _folder_config(probe)  # a folder of another architecture is refused before any weight is mapped
    files = weight_files(probe.path, probe.entries)
    stack = contextlib.ExitStack()
    try:
        parts = [part.weights for part in _open_parts(files, stack)]
        raw = merged_weights(parts, stack.close)
        layout = hf_layout_of(raw.specs())
        if layout is None:
            raise NotACheckpointError(
                probe.path,
                "holds a GPT-2 config.json, but its weights are not in Hugging Face GPT-2's names and shapes",
                expected="GPT2LMHeadModel / GPT2Model weights (transformer.h.0.attn.c_attn.weight, Conv1D layout)",
                fix="save the model again with save_pretrained, or pass the weights file itself",
            )
        return to_our_weights(raw, layout)
    except BaseException:
        stack.close()
        raise


class _Part:
    """One weight file of a folder, open until the stack closes: its WeightSet in the file's names."""

    def __init__(self, weights: WeightSet, size: int) -> None:
        self.weights, self.size = weights, size


def _open_parts(files: list[Path], stack: contextlib.ExitStack) -> list[_Part]:
    from . import probe_path  # the package's probe: one boundary for every read

    parts = []
    for path in files:
        if path.suffix == ".safetensors":
            file = open_safetensors(path, stack)
            parts.append(_Part(safetensors_weights(file), file.handle.size))
            continue
        probe = stack.enter_context(probe_path(path, is_dir=False))
        structure = structure_of(probe) if is_torch_file(probe) else None
        if fmt.checkpoint_kind(structure, TensorStub) != "bare":
            raise NotACheckpointError(
                path,
                "is not a state_dict of tensors (a Hugging Face weights file holds nothing else)",
                expected="torch.save(model.state_dict()) as save_pretrained writes it",
                fix="download or copy the folder again",
            )
        parts.append(_Part(stub_weights(probe, structure), probe.size))
    return parts


def _record(
    probe: Probe, config: dict, facts: dict, size: int, notes: list[str], *, source: str
) -> CheckpointRecord:

    record = record_from_fields(
        probe, {"config": config}, kind="huggingface", source=source, facts=facts, notes=notes
    )
    return replace(record, size_bytes=size)
