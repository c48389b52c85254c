"""This notebook's exported safetensors: ``<name>.safetensors`` with ``<name>.config.json`` beside it.

The export cell writes the model's weights in our names (``transformer.h.0.attn.c_attn.weight``,
Linear layout) with ``safetensors.torch.save_model``, which stores the tied
``lm_head.weight`` / ``transformer.wte.weight`` pair once, and ``GPTConfig.to_dict()`` as
``<name>.config.json``. The record reads the header and the config only; the missing half of
the tied pair is rebuilt from the stored one, under the same storage key (copied once).
A safetensors file in our names without the config beside it loads too (settings from the
shapes; the head count must then be given), and so does ``model.transformer``'s alone
(``wte.weight``, ``h.0...`` in Linear layout: ``transformer.`` is added; Hugging Face's
``GPT2Model`` has the same names with Conv1D weights and goes to ``huggingface``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CorruptCheckpointError
from ..record import CheckpointRecord
from ..safetensors_file import SafetensorsFile
from .base import Probe, Source, WeightSet
from .hf_folder import read_json
from .hf_layout import EMBEDDING, HEAD, hf_layout_of, is_our_trunk, trunk_to_our_weights
from .records import clean_model_settings, record_from_fields
from .safetensors_files import is_safetensors, safetensors_of, safetensors_weights

__all__ = ["SafetensorsExportSource", "config_path_of"]


def config_path_of(weights: Path) -> Path:
    """``model.safetensors`` -> ``model.config.json`` (the export cell's pair)."""
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".config.json")


class SafetensorsExportSource(Source):
    """A safetensors file whose names are this notebook's GPT's (not Hugging Face's Conv1D layout)."""

    kind = "safetensors"

    def claims(self, probe: Probe) -> bool:
        if not is_safetensors(probe):
            return False
        try:
            file = safetensors_of(probe)
        except CorruptCheckpointError:  # a damaged header: listed as skipped with the reader's reason
            return probe.path.name.endswith(".safetensors")
        names, specs = file.entries, _specs(file)
        return ((EMBEDDING in names or HEAD in names) and hf_layout_of(specs) is None) or is_our_trunk(specs)

    def read_record(self, probe: Probe) -> CheckpointRecord:

        file = safetensors_of(probe)
        settings, notes = _settings(probe.path)
        facts = {"tensor_count": len(file.entries), "has_optimizer": False, "has_rng_state": False}
        raw = {"config": {"model": settings} if settings else {}}
        return record_from_fields(probe, raw, kind="safetensors", source="header", facts=facts, notes=notes)

    def open_weights(self, probe: Probe) -> WeightSet:
        file = safetensors_of(probe)
        raw = safetensors_weights(file)
        if is_our_trunk(raw.specs()):
            return trunk_to_our_weights(raw)
        present = [name for name in (EMBEDDING, HEAD) if name in file.entries]
        if len(present) != 1:
            return raw
        mapping = {name: name for name in raw.names()}
        missing = HEAD if present[0] == EMBEDDING else EMBEDDING
        mapping[missing] = present[0]
        return raw.renamed(mapping, (f"{missing} rebuilt from {present[0]} (tied; stored once)",))


def _specs(file: SafetensorsFile) -> dict[str, Any]:
    return safetensors_weights(file).specs()


def _settings(weights: Path) -> tuple[dict[str, Any], list[str]]:
    """GPTConfig's settings from the ``<name>.config.json`` beside the file; none when it is absent."""
    config = config_path_of(weights)
    if not config.is_file():
        return {}, [f"no {config.name} beside the file: model settings inferred from the tensor shapes"]
    settings = clean_model_settings(read_json(config, "exported model config"))
    return settings, [f"model settings from {config.name}"]
