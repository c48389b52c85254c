"""Cells 17, 38 and 39: sample text from the model and measure it on the validation split."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from utils.training.engine.prefixes import unwrap_model
from utils.training.loop import evaluate

__all__ = [
    "printable",
    "generate_text",
    "Evaluation",
    "evaluate_model",
    "evaluate_session_model",
    "compare_samples",
]


def printable(text: str) -> str:
    """``text`` with control characters (other than newlines and tabs) shown as ``·``.

    An untrained byte-level model emits any byte, including terminal escape codes.
    """
    return "".join(ch if ch in "\n\t" or ch.isprintable() else "·" for ch in text)


def generate_text(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 40,
    seed: int = 0,
) -> str:
    """The prompt followed by ``max_new_tokens`` sampled tokens, decoded.

    Sampling draws from a private generator seeded with ``seed``: the same call
    gives the same text, and the global random state (training's) is untouched.

    Raises:
        ValueError: an empty prompt, or bad sampling settings.
    """
    if not prompt:
        raise ValueError("PROMPT is empty: give the model some text to continue, e.g. 'ROMEO:'")
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(seed)
    out = model.generate(
        ids, max_new_tokens, temperature=temperature, top_k=top_k or None, generator=generator
    )
    return tokenizer.decode(out[0].tolist())


@dataclass(frozen=True)
class Evaluation:
    """Validation loss and perplexity, with the reference points that give them meaning."""

    val_loss: float
    tokens: int
    vocab_size: int
    recorded_val_loss: float | None = None
    untrained_loss: float | None = None

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.val_loss, 700.0))

    @property
    def random_guess_loss(self) -> float:
        return math.log(self.vocab_size)

    def lines(self) -> list[str]:
        lines = [
            f"📉 Validation loss: {self.val_loss:.4f} over {self.tokens:,} tokens",
            f"🎲 Perplexity: {self.perplexity:.2f} (as unsure as a uniform choice among {self.perplexity:.1f} "
            f"tokens; random guessing: {self.vocab_size:,})",
            f"   Random-guess loss ln({self.vocab_size}) = {self.random_guess_loss:.4f}",
        ]
        if self.untrained_loss is not None:
            lines.append(f"   Untrained model (Cell 16): {self.untrained_loss:.4f}")
        if self.recorded_val_loss is not None:
            delta = self.val_loss - self.recorded_val_loss
            same = "the same batches give the same loss: these are the checkpoint's weights"
            note = same if abs(delta) < 1e-4 else "a different number of validation batches changes it"
            lines.append(
                f"   Recorded in the checkpoint: {self.recorded_val_loss:.4f} ({delta:+.4f}; {note})"
            )
        return lines


def evaluate_model(
    model: torch.nn.Module,
    val_batches: Sequence,
    *,
    recorded_val_loss: float | None = None,
    untrained_loss: float | None = None,
    amp_dtype: torch.dtype | None = None,
) -> Evaluation:
    """Mean validation loss of ``model`` over ``val_batches`` (no randomness, mode restored).

    Args:
        amp_dtype: the autocast dtype training evaluated under (Cell 20's ``amp_dtype``); the
            recorded val_loss is only comparable when the same precision is used here.

    Raises:
        ValueError: no validation batches.
    """
    loss = evaluate(model, list(val_batches), amp_dtype=amp_dtype)
    tokens = sum(int(y.numel()) for _, y in val_batches)
    vocab = unwrap_model(model).config.vocab_size  # a compiled or wrapped model has no .config itself
    return Evaluation(loss, tokens, vocab, recorded_val_loss, untrained_loss)


def evaluate_session_model(namespace: Mapping[str, Any]) -> Evaluation:
    """Evaluate the session's ``model`` on ``val_batches``, against the recorded and untrained losses.

    The recorded loss is the one of the checkpoint Cell 34 loaded (``load_report``),
    else Cell 35's ``best_val_loss``; the untrained loss is Cell 16's. The loss is computed
    under Cell 20's ``amp_dtype`` (when set), as training computed the recorded one.

    Raises:
        NameError: ``model`` or ``val_batches`` is missing (run Cells 12 and 13).
    """
    for name, cell in (("model", 13), ("val_batches", 12)):
        if name not in namespace:
            raise NameError(f"`{name}` is not defined: run Cell {cell} first")
    report = namespace.get("load_report")
    recorded = (
        (report.metrics or {}).get("val_loss") if report is not None else namespace.get("best_val_loss")
    )
    return evaluate_model(
        namespace["model"],
        namespace["val_batches"],
        recorded_val_loss=recorded,
        untrained_loss=namespace.get("untrained_loss"),
        amp_dtype=namespace.get("amp_dtype"),
    )


def compare_samples(trained: str, untrained: str | None, prompt: str) -> list[str]:
    """Say whether the trained model's continuation differs from the untrained one (Cell 17's)."""
    if untrained is None:
        return ["ℹ️  No untrained sample to compare with (Cell 17 was not run in this session)."]
    if trained == untrained:
        return ["⚠️  Same text as the untrained model: the weights were probably not loaded or trained."]
    return [
        "🆚 Untrained model, same prompt and seed (Cell 17):",
        "   " + printable(untrained[len(prompt) : len(prompt) + 120]).replace("\n", " ⏎ "),
    ]
