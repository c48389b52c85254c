"""Write a model as a Hugging Face GPT-2 folder that ``GPT2LMHeadModel.from_pretrained`` loads.

One job: our names -> Hugging Face's, Linear -> Conv1D (transposed), our settings ->
``config.json`` (``sources/hf_layout`` holds the mapping both ways). The folder holds
``config.json`` and ``model.safetensors`` (the tied ``lm_head`` left out, as
``save_pretrained`` does), each written atomically, so that users can
``push_to_hub`` it or use ``pipeline("text-generation", model=folder)``. The export is
read back through the engine's own Hugging Face reader into a fresh model and compared
tensor by tensor, so a folder that would not load as this model is never reported good.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import atomic_write
from .prefixes import unwrap_model
from .sources.hf_layout import hf_config, hf_state_dict

__all__ = ["HuggingFaceExport", "export_hugging_face"]

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass(frozen=True)
class HuggingFaceExport:
    """What :func:`export_hugging_face` wrote."""

    folder: Path
    config: dict
    size_bytes: int
    tensors: int
    verified: bool  # read back through the engine into a fresh model: every tensor identical


def export_hugging_face(model: torch.nn.Module, folder: str | os.PathLike) -> HuggingFaceExport:
    """Write ``model`` (our GPT, possibly wrapped) as a Hugging Face GPT-2 folder, then verify it.

    Args:
        model: a GPT with a ``config`` (GPTConfig).
        folder: created if needed; an earlier export's two files there are replaced.

    Returns:
        A :class:`HuggingFaceExport`.

    Raises:
        TypeError: the model has no GPTConfig (``model.config.to_dict()``).
        OSError: the folder cannot be written (nothing half-written stays behind).
    """
    from safetensors.torch import save

    base = unwrap_model(model)
    if not hasattr(getattr(base, "config", None), "to_dict"):
        raise TypeError(
            f"export_hugging_face needs this notebook's GPT (with a GPTConfig), got {type(base).__name__}"
        )
    settings = base.config.to_dict()
    config, tensors = hf_config(settings), hf_state_dict(base.state_dict(), settings)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = atomic_write(folder / WEIGHTS_NAME, lambda file: file.write(save(tensors, {"format": "pt"})))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(folder / CONFIG_NAME, lambda file: file.write(text.encode("utf-8")))
    return HuggingFaceExport(folder, config, weights.stat().st_size, len(tensors), _read_back(base, folder))


def _read_back(base: torch.nn.Module, folder: Path) -> bool:
    """Rebuild the model from the folder through the engine's Hugging Face reader; compare every tensor.

    A model without biases comes back with zero biases (GPT-2 always has them): those must be zero.
    """
    from .build import build_model_from_checkpoint

    fresh, report = build_model_from_checkpoint(folder, "cpu")
    reference = base.state_dict()
    for name, tensor in fresh.state_dict().items():
        ours = reference.get(name)
        if ours is None and not (name.endswith(".bias") and not tensor.any()):
            return False
        if ours is not None and not torch.equal(ours.detach().cpu(), tensor):
            return False
    return report.kind == "huggingface" and fresh.config.activation == base.config.activation
