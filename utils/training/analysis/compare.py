"""Compare checkpoints on the same batches: ``compare_checkpoints``.

For each checkpoint: validation loss and perplexity, top-1 agreement with the first
checkpoint's predictions, the mean KL divergence from the first checkpoint's next-token
distribution, and the same prompt sampled with the same seed.

Memory: the user's model is never written to. Every checkpoint is loaded, through the
engine's loader (memory-mapped, validated), into ONE scratch copy of the model, so at most
one extra copy of the weights exists at any time. The KL divergence needs the first
checkpoint's full distribution beside each other checkpoint's; keeping it for every batch
would cost tokens x vocabulary floats (GBs for GPT-2). Instead the batches are taken in
windows whose reference log-probabilities fit in ``reference_budget_bytes``: per window the
reference is loaded first, then each other checkpoint. A validation set that fits in one
window (the tiny preset's) loads each checkpoint once; a large one reloads them per window
(a load from the page cache costs about as much as a few forward passes).
"""

from __future__ import annotations

import copy
import math
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import torch

from utils.training.engine.loading import load_model_weights
from utils.training.engine.prefixes import unwrap_model

from .logprobs import kl_sum, log_probs

__all__ = ["ComparisonRow", "ComparisonReport", "compare_checkpoints", "REFERENCE_BUDGET_BYTES"]

REFERENCE_BUDGET_BYTES = 32 << 20  # the reference's log-probabilities kept per window
_WIDTH = 110
_SAMPLE_LINES = 12


@dataclass(frozen=True)
class ComparisonRow:
    """One checkpoint's results; ``agreement`` is a fraction (1.0 = every top-1 prediction the same)."""

    path: Path
    val_loss: float
    perplexity: float
    agreement: float
    kl: float  # nats per token, KL(first checkpoint || this one)
    sample: str | list[int] | None
    epoch: int | None = None
    global_step: int | None = None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ComparisonReport:
    """What ``compare_checkpoints`` measured; ``lines()`` is the printed table."""

    rows: list[ComparisonRow]
    tokens: int
    prompt: str | list[int] | None = None
    seed: int = 0
    max_new_tokens: int = 0
    loads: int = 0  # checkpoint loads into the scratch copy (paths x windows)
    windows: int = 1

    def lines(self) -> list[str]:
        """The table (one row per checkpoint), then the samples side by side."""
        width = min(64, max(len(row.name) for row in self.rows) + 7)  # room for '  (ref)'
        out = [
            f"🔬 {len(self.rows)} checkpoint(s) on the same {self.tokens:,} validation tokens; "
            "agreement and KL against #1 (the reference)",
            f"   {'#':>2}  {'checkpoint':<{width}} {'epoch':>5} {'step':>8} {'val_loss':>9} "
            f"{'perplexity':>11} {'top-1 agree':>12} {'KL nats/token':>14}",
        ]
        for i, row in enumerate(self.rows, start=1):
            label = row.name + ("  (ref)" if i == 1 else "")
            out.append(
                f"   {i:>2}  {label:<{width}} {_text(row.epoch):>5} {_text(row.global_step):>8} "
                f"{row.val_loss:>9.4f} {row.perplexity:>11.2f} {row.agreement:>12.1%} {row.kl:>14.4f}"
            )
        if self.prompt is not None:
            out += [
                "",
                f"✍️  Same prompt {self.prompt!r}, seed {self.seed}, {self.max_new_tokens} new tokens:",
            ]
            out += _side_by_side([row.sample for row in self.rows])
        return out


def compare_checkpoints(
    model: torch.nn.Module,
    paths: Sequence[str | os.PathLike],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    prompt: str | Sequence[int] | None = None,
    max_new_tokens: int = 100,
    tokenizer: Any = None,
    seed: int = 0,
    temperature: float = 0.8,
    top_k: int | None = 40,
    reference_budget_bytes: int = REFERENCE_BUDGET_BYTES,
    out: Callable[[str], None] | None = print,
) -> ComparisonReport:
    """Evaluate each checkpoint on the same batches and compare it with the first one.

    Args:
        model: a model of the checkpoints' architecture; it is copied once and never changed.
        paths: checkpoint files; the first is the reference for agreement and KL.
        batches: ``(x, y)`` token batches (``y`` = next tokens, -1 = ignored), e.g. ``val_batches``.
        prompt: text (needs ``tokenizer``) or token ids to continue; None: no samples.
        max_new_tokens, temperature, top_k, seed: sampling settings, the same for every checkpoint.
        tokenizer: encodes a text prompt and decodes the samples (else samples are token ids).
        reference_budget_bytes: memory for the reference's log-probabilities per window of batches.
        out: where the table is printed (None: not printed).

    Returns:
        A :class:`ComparisonReport` with one row per path, in order.

    Raises:
        ValueError: no paths, no batches, a text prompt without a tokenizer, or bad sampling settings.
        CheckpointError: a file cannot be loaded into the model (the model is unchanged).
    """
    _check_arguments(paths, batches, prompt, tokenizer, max_new_tokens)
    paths, batches = [Path(p) for p in paths], list(batches)
    scratch = _scratch_copy(model)
    device = next(scratch.parameters()).device
    run = _Run(scratch, device, paths, len(batches))
    start = 0
    while start < len(batches):
        references = run.reference_window(batches, start, reference_budget_bytes)
        if start == 0 and prompt is not None:
            run.samples[0] = _sample(scratch, prompt, tokenizer, max_new_tokens, seed, temperature, top_k)
        for k in range(1, len(paths)):
            run.load(k)
            if start == 0 and prompt is not None:
                run.samples[k] = _sample(scratch, prompt, tokenizer, max_new_tokens, seed, temperature, top_k)
            for (x, y), reference in zip(batches[start : start + len(references)], references, strict=True):
                run.totals[k].add(log_probs(scratch, x.to(device)), y.to(device), reference)
        start += len(references)
        run.windows += 1
    report = run.report(prompt, seed, max_new_tokens)
    if out is not None:
        out("\n".join(report.lines()))
    return report


def _check_arguments(paths, batches, prompt, tokenizer, max_new_tokens) -> None:
    if not paths:
        raise ValueError("compare_checkpoints() needs at least one checkpoint path")
    if not batches:
        raise ValueError("compare_checkpoints() needs at least one (x, y) batch, e.g. val_batches (Cell 12)")
    if isinstance(prompt, str) and tokenizer is None:
        raise ValueError("a text prompt needs a tokenizer (Cell 9's `tokenizer`), or pass token ids")
    if isinstance(prompt, str) and not prompt:
        raise ValueError("the prompt is empty: give the models some text to continue, e.g. 'ROMEO:'")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def _scratch_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The one extra copy of the weights; checkpoints are loaded into it, never into ``model``."""
    scratch = copy.deepcopy(unwrap_model(model))  # deepcopy keeps tied weights tied; gradients are not copied
    scratch.requires_grad_(False)
    return scratch.eval()


@dataclass
class _Totals:
    """Sums over the batches for one checkpoint."""

    nll: float = 0.0
    tokens: int = 0
    agree: int = 0
    kl: float = 0.0

    def add(self, logp: torch.Tensor, y: torch.Tensor, reference: torch.Tensor | None) -> None:
        valid = y != -1
        picked = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        self.nll -= float(picked[valid].double().sum())
        self.tokens += int(valid.sum())
        if reference is not None:
            same = (reference.argmax(-1) == logp.argmax(-1)) & valid
            self.agree += int(same.sum())
            self.kl += kl_sum(reference, logp, valid)


@dataclass
class _Run:
    scratch: torch.nn.Module
    device: torch.device
    paths: list[Path]
    batch_count: int
    totals: list[_Totals] = field(init=False)
    samples: list[Any] = field(init=False)
    facts: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    loads: int = 0
    windows: int = 0

    def __post_init__(self) -> None:
        self.totals = [_Totals() for _ in self.paths]
        self.samples = [None] * len(self.paths)

    def load(self, index: int) -> None:
        report = load_model_weights(self.scratch, self.paths[index], device=self.device, verify=False)
        self.facts.setdefault(index, (report.epoch, report.global_step))
        self.loads += 1

    def reference_window(self, batches, start: int, budget: int) -> list[torch.Tensor]:
        """Load the reference; its log-probs for the batches from ``start`` that fit in ``budget``."""
        self.load(0)
        kept: list[torch.Tensor] = []
        used = 0
        for x, y in batches[start:]:
            if kept and used + kept[-1].numel() * kept[-1].element_size() > budget:
                break
            logp = log_probs(self.scratch, x.to(self.device))
            self.totals[0].add(logp, y.to(self.device), None)
            kept.append(logp)
            used += logp.numel() * logp.element_size()
        return kept

    def report(self, prompt, seed: int, max_new_tokens: int) -> ComparisonReport:
        rows = []
        for k, (path, totals) in enumerate(zip(self.paths, self.totals, strict=True)):
            loss = totals.nll / max(totals.tokens, 1)
            agreement = 1.0 if k == 0 else totals.agree / max(totals.tokens, 1)
            kl = 0.0 if k == 0 else totals.kl / max(totals.tokens, 1)
            epoch, step = self.facts.get(k, (None, None))
            rows.append(
                ComparisonRow(
                    path, loss, math.exp(min(loss, 700.0)), agreement, kl, self.samples[k], epoch, step
                )
            )
        return ComparisonReport(
            rows, self.totals[0].tokens, prompt, seed, max_new_tokens, self.loads, self.windows
        )


def _sample(model, prompt, tokenizer, max_new_tokens: int, seed: int, temperature: float, top_k):
    """The prompt continued by ``model`` with a private generator: same seed, same draws."""
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(seed)
    tokens = model.generate(
        idx, max_new_tokens, temperature=temperature, top_k=top_k or None, generator=generator
    )
    return tokenizer.decode(tokens[0].tolist()) if tokenizer is not None else tokens[0].tolist()


def _side_by_side(samples: list[Any]) -> list[str]:
    """Up to three samples in columns (numbered as the table's rows); more, one under another."""
    texts = [_printable(s) for s in samples]
    if len(texts) > 3:
        return [f"   #{i}: {text}" for i, text in enumerate(texts, start=1)]
    width = (_WIDTH - 3 - 3 * (len(texts) - 1)) // len(texts)
    columns = [textwrap.wrap(text, width) or [""] for text in texts]
    columns = [col[: _SAMPLE_LINES - 1] + ["…"] if len(col) > _SAMPLE_LINES else col for col in columns]
    lines = ["   " + " | ".join(f"#{i}".ljust(width) for i in range(1, len(texts) + 1))]
    for parts in zip_longest(*columns, fillvalue=""):
        lines.append("   " + " | ".join(part.ljust(width) for part in parts))
    return [line.rstrip() for line in lines]


def _printable(sample: Any) -> str:
    """A sample on one logical line: newlines as ⏎, control characters (an untrained model's) as ·."""
    text = sample if isinstance(sample, str) else " ".join(str(t) for t in sample or [])
    text = text.replace("\n", " ⏎ ")
    return "".join(ch if ch.isprintable() else "·" for ch in text)


def _text(value: int | None) -> str:
    return "?" if value is None else str(value)
