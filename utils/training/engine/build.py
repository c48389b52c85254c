"""Build a model that fits a checkpoint, from what the checkpoint says (or shows) about itself.

The settings come, in order of trust, from the model config the file carries (ours,
nanoGPT's ``model_args``, Hugging Face's ``config.json``, Lightning's
``hyper_parameters``: each source translates its own into ``GPTConfig``'s names), then
from the tensors' shapes (vocabulary and width from the token embedding, context from
the position embedding, layers from the block numbers 0..N-1, bias from the presence of
bias tensors). The head count cannot be seen in any shape: when the file does not say it,
the caller must (``n_head=``), and the error says so.

A file's settings are claims: a 7 KB ``config.json`` can ask for 50 million token rows
(3 GB), a stray ``transformer.h.20000.x`` for 20,001 layers. So before any memory is
allocated, every size is bounded (:data:`MAX_SETTINGS`), layers are counted only from
block numbers 0..N-1 without a gap, and the model is built on the ``meta`` device (shapes,
no storage) and compared with the file's tensor names and shapes: a disagreement is
refused, naming the settings at fault. The real model is then no larger than the file.
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
from .sources.base import TensorSpec
from .state_dict_diff import compare_state_dicts
from .text import safe_text

__all__ = [
    "MAX_SETTINGS",
    "build_model_from_checkpoint",
    "check_model_fits",
    "checked_model_config",
    "infer_model_config",
]

_BLOCK = re.compile(r"^transformer\.h\.(\d+)\.")
_EMBEDDING = "transformer.wte.weight"
_POSITIONS = "transformer.wpe.weight"
# The largest settings a file may ask for (GPT-2 xl: 50,257 tokens, 1,024 positions, width 1,600,
# 48 layers); anything above is a damaged or hostile config, refused before the model is built.
MAX_SETTINGS = {"vocab_size": 2**24, "block_size": 2**24, "n_embd": 2**24, "n_head": 2**24, "n_layer": 1_000}
_SHOWN = ("vocab_size", "n_embd", "block_size", "n_layer", "bias")
_FIX = "pass the settings yourself, e.g. build_model_from_checkpoint(path, n_head=12)"


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
            count), are out of bounds, or do not fit the file's tensors (nothing is allocated).
        The errors of ``load_model_weights``.
    """
    path = Path(path).expanduser()
    config, notes = checked_model_config(path, n_head=n_head, **overrides)
    model = GPT(config)
    report = load_model_weights(model, path, device, trust_pickle=trust_pickle)
    report.source_notes = notes + report.source_notes
    return model, report


def checked_model_config(
    path: str | os.PathLike, *, n_head: int | None = None, **overrides: Any
) -> tuple[GPTConfig, list[str]]:
    """The ``GPTConfig`` for the checkpoint at ``path``, checked against its tensors on the meta device.

    Args, Raises: as for :func:`infer_model_config` and :func:`check_model_fits`.
    """
    path = Path(path).expanduser()
    stored, specs = _read(path)
    settings, notes = _settings(path, stored, specs, n_head, overrides)
    config = _config(path, settings)
    check_model_fits(path, config, specs)
    return config, notes


def infer_model_config(
    path: str | os.PathLike, *, n_head: int | None = None, **overrides: Any
) -> tuple[dict[str, Any], list[str]]:
    """GPTConfig settings for the checkpoint at ``path``, and a note on where each came from.

    Raises:
        ArchitectureMismatchError: a setting can be neither read nor inferred, the block numbers
            have a gap, or a size is out of bounds (:data:`MAX_SETTINGS`).
    """
    path = Path(path)
    stored, specs = _read(path)
    return _settings(path, stored, specs, n_head, overrides)


def check_model_fits(
    path: str | os.PathLike, config: GPTConfig, specs: Mapping[str, TensorSpec] | None = None
) -> None:
    """Refuse, before any memory is allocated, a config whose model would not hold the file's tensors.

    ``GPT(config)`` is built on the meta device and its names and shapes compared with the
    file's (wrapper prefixes stripped), as the loader will; dtypes are left to the loader.

    Args:
        path: the checkpoint.
        config: the settings to build.
        specs: the file's tensors (read from ``path`` when not given).

    Raises:
        ArchitectureMismatchError: names or shapes differ; the message names the settings that
            disagree with the tensors.
    """
    path = Path(path)
    if specs is None:
        _, specs = _read(path)
    try:
        with torch.device("meta"):
            model_sd = GPT(config).state_dict()
    except (TypeError, ValueError, RuntimeError) as error:  # e.g. settings torch cannot build
        raise ArchitectureMismatchError(
            path, f"a model with these settings cannot be built: {safe_text(error)}", fix=_FIX
        ) from error
    named, _ = strip_wrapper_prefixes(specs, model_keys=model_sd)
    diff = compare_state_dicts(named, model_sd)
    if not (diff.missing or diff.unexpected or diff.shape_mismatches):
        return
    shown = _from_shapes(named)
    shown.update(_layers(named)[0])
    wrong = {key: shown[key] for key in _SHOWN if key in shown and shown[key] != getattr(config, key)}
    lines = [f"{key}: the settings say {_show(getattr(config, key))}, the file's tensors show {_show(value)}"
             for key, value in wrong.items()]  # fmt: skip
    settings = f" ({'; '.join(lines)})" if lines else ""
    passed = ", ".join(f"{key}={value!r}" for key, value in wrong.items()) or "..."
    raise ArchitectureMismatchError(
        path,
        f"the model settings do not fit the file's own tensors{settings}; nothing was built "
        f"({diff.summary()})\n{diff.format(max_lines=8)}",
        diff=diff,
        expected="a checkpoint whose stored settings describe its tensors",
        fix=f"pass the settings its tensors show: build_model_from_checkpoint({str(path)!r}, {passed}), "
        "or download or export the checkpoint again (its config.json or model_args disagree with its weights)",
    )


def _show(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, TensorSpec]]:
    """(the file's model settings, its tensors under our names with wrapper prefixes stripped)."""
    with open_checkpoint(path) as checkpoint:
        stored = checkpoint.record().model_config or {}
        with checkpoint.weights() as weights:
            specs, _ = strip_wrapper_prefixes(weights.specs())
    return stored, specs


def _settings(
    path: Path,
    stored: Mapping[str, Any],
    specs: Mapping[str, TensorSpec],
    n_head: int | None,
    overrides: dict,
) -> tuple[dict[str, Any], list[str]]:
    known = {key: value for key, value in stored.items() if key in GPTConfig.__dataclass_fields__}
    notes = [f"model settings from the file: {', '.join(sorted(known))}"] if known else []
    inferred = {k: v for k, v in _from_shapes(specs).items() if k not in known}
    if "n_layer" not in known and "n_layer" not in overrides:
        layers, problem = _layers(specs)
        if problem:
            raise ArchitectureMismatchError(
                path,
                f"the model's layer count cannot be read from its tensors: {problem}",
                expected="blocks numbered 0, 1, ..., N-1 (transformer.h.0. to transformer.h.<N-1>.)",
                fix="remove the stray tensors, or pass the layer count: "
                "build_model_from_checkpoint(path, n_layer=...)",
            )
        inferred.update(layers)
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
    _check_bounds(path, settings)
    return settings, notes


def _check_bounds(path: Path, settings: Mapping[str, Any]) -> None:
    """Refuse a size no GPT this notebook builds has (before anything is built, even on meta)."""
    for key, limit in MAX_SETTINGS.items():
        value = settings.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise ArchitectureMismatchError(
                path,
                f"refused: the model settings ask for {key}={value:,}, more than the {limit:,} this "
                "notebook builds (a damaged or hand-edited config?)",
                expected=f"{key} of at most {limit:,} (GPT-2 xl: vocab_size 50,257, n_embd 1,600, n_layer 48)",
                fix="download or export the checkpoint again, or pass the right value: "
                f"build_model_from_checkpoint(path, {key}=...)",
            )


def _config(path: Path, settings: Mapping[str, Any]) -> GPTConfig:
    try:
        return GPTConfig(**settings)
    except (TypeError, ValueError) as error:  # its message quotes the file's values: escaped, bounded
        raise ArchitectureMismatchError(
            path,
            f"the model settings read from the file do not make a valid GPT: {safe_text(error)}",
            expected="settings of a GPT-2-style model",
            fix=_FIX,
        ) from error


def _from_shapes(specs: Mapping[str, Any]) -> dict[str, Any]:
    """The GPT settings the embeddings and biases show (none for a file that is not a GPT's); layers:
    :func:`_layers`."""
    found: dict[str, Any] = {}
    embedding, positions = specs.get(_EMBEDDING), specs.get(_POSITIONS)
    if embedding is not None and len(embedding.shape) == 2:
        found["vocab_size"], found["n_embd"] = embedding.shape
    if positions is not None and len(positions.shape) == 2:
        found["block_size"] = positions.shape[0]
    if any(isinstance(name, str) and _BLOCK.match(name) for name in specs):
        found["bias"] = "transformer.h.0.attn.c_attn.bias" in specs
    return found


def _layers(specs: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``({"n_layer": N}, None)`` from the block numbers when they are 0..N-1; else ``({}, why not)``."""
    numbers = {match.group(1) for name in specs if isinstance(name, str) and (match := _BLOCK.match(name))}
    if not numbers:
        return {}, None
    limit = MAX_SETTINGS["n_layer"]
    absurd = next((n for n in numbers if len(n) > 4 or int(n) >= limit), None)
    if absurd is not None:
        return (
            {},
            f"a tensor of block {safe_text(absurd, 12)} (this notebook builds at most {limit:,} layers)",
        )
    blocks = sorted(int(n) for n in numbers)  # at most `limit` of them
    if blocks != list(range(len(blocks))):
        stored = set(blocks)
        gaps = [n for n in range(blocks[-1]) if n not in stored]
        return {}, (
            f"blocks {_span(blocks)} are stored, but not block(s) {_span(gaps)}: a gap in the numbering"
        )
    return {"n_layer": len(blocks)}, None


def _span(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:6])
    return shown + (f", ... ({len(numbers):,} in all)" if len(numbers) > 6 else "")


def _guess_heads(settings: Mapping[str, Any]) -> str:
    width = settings.get("n_embd")
    return str(max(1, width // 64)) if isinstance(width, int) and width >= 64 else "?"
