"""Build a model that fits a checkpoint, from what the checkpoint says (or shows) about itself.

The settings come, in order of trust, from the model config the file carries (ours,
nanoGPT's ``model_args``, Hugging Face's ``config.json``, Lightning's
``hyper_parameters``: each source translates its own into ``GPTConfig``'s names), then
from the tensors' shapes (vocabulary and width from the token embedding, context from
the position embedding, layers from the block numbers, bias from the presence of bias
tensors). The head count cannot be seen in any shape: when the file does not say it,
the caller must (``n_head=``), and the error says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from utils.model.gpt import GPT, GPTConfig

from .errors import ArchitectureMismatchError
from .loading import LoadReport, load_model_weights
from .prefixes import strip_wrapper_prefixes
from .sources import open_checkpoint

__all__ = ["build_model_from_checkpoint", "infer_model_config"]

_BLOCK = re.compile(r"^transformer\.h\.(\d+)\.")
_EMBEDDING = "transformer.wte.weight"
_POSITIONS = "transformer.wpe.weight"


def build_model_from_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    *,
    n_head: int | None = None,
    trust_pickle: bool = False,
    **overrides: Any,
) -> tuple[GPT, LoadReport]:
    """A GPT built with the checkpoint's settings, holding its weights.

    Args:
        path: any checkpoint the engine lists (ours, nanoGPT, Lightning, Hugging Face, DCP, ...).
        device: where the model goes (default: CUDA when available).
        n_head: the attention head count, when the file does not store it.
        trust_pickle: as for ``load_model_weights``.
        overrides: GPTConfig settings to use instead of the file's (e.g. ``dropout=0.1``).

    Returns:
        ``(model, report)``; the report's ``notes`` say where each setting came from.

    Raises:
        ArchitectureMismatchError: the settings cannot be found or inferred (e.g. the head
            count), or the file's tensors are not a GPT's.
        The errors of ``load_model_weights``.
    """
    path = Path(path).expanduser()
    settings, notes = infer_model_config(path, n_head=n_head, **overrides)
    try:
        config = GPTConfig(**settings)
    except (TypeError, ValueError) as error:
        raise ArchitectureMismatchError(
            path,
            f"the model settings read from the file do not make a valid GPT: {error}",
            expected="settings of a GPT-2-style model",
            fix="pass the settings yourself, e.g. build_model_from_checkpoint(path, n_head=12)",
        ) from error
    model = GPT(config)
    report = load_model_weights(model, path, device, trust_pickle=trust_pickle)
    report.source_notes = notes + report.source_notes
    return model, report


def infer_model_config(
    path: str | os.PathLike, *, n_head: int | None = None, **overrides: Any
) -> tuple[dict[str, Any], list[str]]:
    """GPTConfig settings for the checkpoint at ``path``, and a note on where each came from.

    Raises:
        ArchitectureMismatchError: a setting can be neither read nor inferred.
    """
    path = Path(path)
    with open_checkpoint(path) as checkpoint:
        stored = checkpoint.record().model_config or {}
        with checkpoint.weights() as weights:
            specs, _ = strip_wrapper_prefixes(weights.specs())
    known = {key: value for key, value in stored.items() if key in GPTConfig.__dataclass_fields__}
    notes = [f"model settings from the file: {', '.join(sorted(known))}"] if known else []
    inferred = {k: v for k, v in _from_shapes(specs).items() if k not in known}
    if inferred:
        notes.append(f"inferred from tensor shapes: {', '.join(f'{k}={v}' for k, v in inferred.items())}")
    settings = {**inferred, **known}
    if n_head is not None:
        settings["n_head"] = n_head
        notes.append(f"n_head={n_head} from the argument")
    settings.update(overrides)
    if "n_head" not in settings:
        raise ArchitectureMismatchError(
            path,
            "the file does not say how many attention heads the model has, and tensor shapes cannot show it",
            expected="a checkpoint that stores its model settings, or the head count as an argument",
            fix=f"pass it: build_model_from_checkpoint({str(path)!r}, n_head=...) (GPT-2 sizes use 64 "
            f"dimensions per head: n_head={_guess_heads(settings)})",
        )
    settings.setdefault("dropout", 0.0)
    return settings, notes


def _from_shapes(specs: Mapping[str, Any]) -> dict[str, Any]:
    """The GPT settings the tensor shapes show (none for a file that is not a GPT's)."""
    found: dict[str, Any] = {}
    embedding, positions = specs.get(_EMBEDDING), specs.get(_POSITIONS)
    if embedding is not None and len(embedding.shape) == 2:
        found["vocab_size"], found["n_embd"] = embedding.shape
    if positions is not None and len(positions.shape) == 2:
        found["block_size"] = positions.shape[0]
    blocks = {int(match.group(1)) for name in specs if (match := _BLOCK.match(name))}
    if blocks:
        found["n_layer"] = max(blocks) + 1
        found["bias"] = "transformer.h.0.attn.c_attn.bias" in specs
    return found


def _guess_heads(settings: Mapping[str, Any]) -> str:
    width = settings.get("n_embd")
    return str(max(1, width // 64)) if isinstance(width, int) and width >= 64 else "?"
