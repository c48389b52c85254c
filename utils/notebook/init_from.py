"""Cells 11 and 13 with ``INIT_FROM``: start from scratch, or fine-tune pretrained weights.

``INIT_FROM`` (Cell 3) is ``"scratch"`` (the preset's random weights), a path to any
checkpoint file or folder the engine reads (ours, nanoGPT's, Lightning's, Hugging Face's,
...), or a Hugging Face hub name (``"gpt2"``, ``"gpt2-medium"``, ``"openai-community/gpt2"``)
downloaded with ``huggingface_hub`` (``config.json`` + ``model.safetensors`` only). Cell 11
then takes the model config from the file -- the preset is not used -- and checks that the
tokenizer fits its vocabulary; Cell 13 builds ``model`` from that config and loads the
weights (safe, verified, all-or-nothing). Checkpoints record ``INIT_FROM`` as
``config["training"]["init_from"]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.data import check_vocab_fits
from utils.model import GPT, GPTConfig, config_for_preset, count_parameters
from utils.training.engine import CheckpointError, load_model_weights
from utils.training.engine.build import check_model_fits, checked_model_config
from utils.training.engine.text import safe_text

__all__ = ["InitChoice", "InitFromError", "build_initial_model", "choose_initial_model", "download_from_hub"]

SCRATCH = "scratch"
HUB_FILES = ("config.json", "model.safetensors")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_BYTES_NOTE = (
    "GPT-2's token rows mean its BPE tokens, not bytes: the byte tokenizer's ids 0-255 land on GPT-2's "
    "single-byte tokens in another order, so little of the pretrained knowledge carries over. "
    "Set TOKENIZER = 'gpt2' (Cell 3) to fine-tune with GPT-2's own vocabulary"
)


class InitFromError(ValueError):
    """INIT_FROM cannot be used: not found, offline, or its model does not fit the tokenizer."""


@dataclass
class InitChoice:
    """Where the model's first weights come from, and the model config that follows (Cell 11)."""

    setting: str  # INIT_FROM as written
    config: GPTConfig
    path: Path | None = None  # None: from scratch
    origin: str = SCRATCH  # "scratch" | "file" | "hub"
    notes: list[str] = field(default_factory=list)
    preset: str = "none: the config is INIT_FROM's"  # what Cell 11 shows as the preset

    @property
    def state(self) -> str:
        """How the model starts: "untrained" (scratch) or "pretrained" (INIT_FROM)."""
        return "untrained" if self.path is None else "pretrained"

    def lines(self) -> list[str]:
        if self.path is None:
            return ["🆕 INIT_FROM = 'scratch': random weights of the preset"]
        where = "downloaded from the Hugging Face hub to " if self.origin == "hub" else ""
        lines = [f"📥 INIT_FROM = {safe_text(self.setting)!r}: {where}{safe_text(self.path)}",
                 "   The model config comes from the file (MODEL_PRESET is not used):"]  # fmt: skip
        return lines + [f"   ℹ️  {safe_text(note)}" for note in self.notes]


def choose_initial_model(
    init_from: str | os.PathLike | None,
    preset: str,
    tokenizer: Any,
    *,
    download: Callable[[str], Path] | None = None,
) -> InitChoice:
    """Cell 11: the model config, from the preset (``"scratch"``) or from INIT_FROM's file.

    Args:
        init_from: ``"scratch"`` / empty / None, a checkpoint path, or a hub name.
        preset: the resolved MODEL_PRESET (used for ``"scratch"`` only).
        tokenizer: Cell 9's tokenizer (``name``, ``vocab_size``).
        download: hub name -> local folder (default :func:`download_from_hub`).

    Raises:
        ValueError: (``"scratch"``) the preset's vocabulary is smaller than the tokenizer's.
        InitFromError: the path does not exist and is no hub name, the download failed, or the
            model has fewer token rows than the tokenizer needs.
        CheckpointError: the file cannot be read, its settings cannot be found (the head count), are
            out of bounds or do not fit its own tensors (checked before anything is allocated).
    """
    setting = str(init_from or "").strip() or SCRATCH
    if setting == SCRATCH:
        config = config_for_preset(preset)
        check_vocab_fits(tokenizer, config)
        return InitChoice(setting, config, preset=preset)
    path, origin = _locate(setting, download or download_from_hub)
    config, notes = checked_model_config(path)  # sizes bounded and checked on the meta device
    notes = notes + _check_vocabulary(config, tokenizer, setting)
    return InitChoice(setting, config, path, origin, notes)


def _locate(setting: str, download: Callable[[str], Path]) -> tuple[Path, str]:
    path = Path(setting).expanduser()
    if path.exists():
        return path, "file"
    if _HUB_NAME.match(setting) and not setting.endswith((".pt", ".pth", ".ckpt", ".bin", ".safetensors")):
        return download(setting), "hub"
    raise InitFromError(
        f"INIT_FROM = {safe_text(setting)!r}: no such file or folder, and not a Hugging Face hub name.\n"
        "Fix: set INIT_FROM (Cell 3) to 'scratch', to an existing checkpoint path, or to a hub name such as 'gpt2'."
    )


def _check_vocabulary(config: GPTConfig, tokenizer: Any, setting: str) -> list[str]:
    """Refuse a model with fewer token rows than the tokenizer needs; say what unused rows mean."""
    needed, rows = int(tokenizer.vocab_size), config.vocab_size
    if needed > rows:
        raise InitFromError(
            f"INIT_FROM = {safe_text(setting)!r}: the model has {rows:,} token rows, but the {tokenizer.name!r} "
            f"tokenizer produces ids up to {needed - 1:,}; ids above {rows - 1:,} would have no embedding.\n"
            f"Fix: pick a tokenizer with at most {rows:,} tokens (TOKENIZER = 'bytes' has 256), or a model "
            "whose vocabulary covers the tokenizer's."
        )
    if tokenizer.name == "bytes" and rows >= 50257:  # Cell 11's table says how many rows stay unused
        return [_BYTES_NOTE]
    return []


def download_from_hub(name: str) -> Path:
    """``config.json`` + ``model.safetensors`` of the hub model ``name``, downloaded (or cached) locally.

    Raises:
        InitFromError: huggingface_hub is missing, the machine is offline, or the model does not exist.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise InitFromError(
            f"INIT_FROM = {name!r} is a Hugging Face hub name, but huggingface_hub is not installed.\n"
            "Fix: pip install huggingface_hub (Cell 1 installs it), or set INIT_FROM to a local folder."
        ) from None
    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=list(HUB_FILES)))
    except Exception as error:  # noqa: BLE001 -- offline, unknown model, rate limit: one message
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise InitFromError(
            f"INIT_FROM = {name!r}: could not download it from the Hugging Face hub "
            f"({type(error).__name__}: {safe_text(first)}).\n"
            f"Fix: check the name and the internet connection; offline, download it elsewhere "
            f"(huggingface-cli download {name} {' '.join(HUB_FILES)} --local-dir gpt2-folder), copy the "
            "folder here and set INIT_FROM to its path."
        ) from error


def build_initial_model(choice: InitChoice, device: torch.device | str) -> tuple[GPT, list[str]]:
    """Cell 13: ``GPT(choice.config)`` on ``device``, with INIT_FROM's weights loaded when there are any.

    Raises:
        InitFromError: the weights cannot be loaded, or no longer fit ``choice.config`` (checked on the
            meta device before the model is allocated); the engine's message is quoted, escaped.
    """
    if choice.path is None:
        model = GPT(choice.config).to(device)
        return model, [f"✅ `model` created: {count_parameters(model).total:,} parameters on {device}"]
    try:  # the file may have changed since Cell 11: checked again before anything is allocated
        check_model_fits(choice.path, choice.config)
        model = GPT(choice.config)
        report = load_model_weights(model, choice.path, device)
    except CheckpointError as error:
        raise InitFromError(
            f"INIT_FROM = {safe_text(choice.setting)!r}: the weights could not be loaded.\n{_escaped(error)}"
        ) from error
    model.train()  # load_model_weights leaves eval mode; training comes next
    lines = [
        f"✅ `model` created from INIT_FROM ({report.kind}): {count_parameters(model).total:,} parameters "
        f"on {report.device}, {report.tensors_loaded} tensors loaded"
        + (", each verified bit-for-bit" if report.verified else ""),
    ]
    return model, lines + [f"   ℹ️  {safe_text(note)}" for note in report.source_notes]


def _escaped(error: BaseException) -> str:
    """The error's lines, bounded (60 of 2,000 characters), each with any control character escaped.

    CheckpointError escapes what a file put into its message (a file name holding ``\\x1b[2J``
    would clear the cell's output); this keeps Cell 13's output safe and short whatever it quotes."""
    return "\n".join(safe_text(line, 2000) for line in str(error).split("\n")[:60])
