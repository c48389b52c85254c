"""Cells 8-12: what the data looks like at each step, in a few readable lines."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["describe_corpus", "roundtrip_check", "describe_split", "describe_batch"]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def describe_corpus(text: str, source: str, preview_chars: int = 300) -> list[str]:
    """Size, line count, distinct characters and the first ``preview_chars`` characters."""
    lines = [
        f"📚 Source: {source}",
        f"   {len(text):,} characters | {len(text.encode('utf-8')):,} bytes | {text.count(chr(10)) + 1:,} lines"
        f" | {len(set(text))} distinct characters",
        "",
        "--- preview ---",
        _clip(text, preview_chars),
        "---------------",
    ]
    return lines


def roundtrip_check(tokenizer, text: str, sample_chars: int = 200) -> tuple[bool, list[str]]:
    """Encode and decode a sample of ``text``: the result must equal the sample.

    Returns:
        (ok, lines): whether decode(encode(sample)) == sample, and what to print.
    """
    sample = text[:sample_chars]
    ids = tokenizer.encode(sample)
    back = tokenizer.decode(ids)
    ok = back == sample
    shown = ", ".join(str(i) for i in ids[:16])
    lines = [
        f"🔤 Tokenizer: {tokenizer.name} | vocabulary: {tokenizer.vocab_size:,} tokens",
        f"   {sample[:40]!r} -> [{shown}{', ...' if len(ids) > 16 else ''}]",
        f"   {len(sample)} characters -> {len(ids)} tokens ({len(sample) / max(1, len(ids)):.2f} chars/token)",
        f"{'✅' if ok else '❌'} Round trip: decode(encode(text)) {'==' if ok else '!='} text",
    ]
    return ok, lines


def describe_split(train_tokens: torch.Tensor, val_tokens: torch.Tensor) -> list[str]:
    """Token counts of the two splits."""
    total = len(train_tokens) + len(val_tokens)
    return [
        f"🧩 Tokens: {total:,} in all",
        f"   train: {len(train_tokens):,} ({len(train_tokens) / total:.0%}) | "
        f"validation: {len(val_tokens):,} ({len(val_tokens) / total:.0%}, the end of the text)",
    ]


def describe_batch(train_batches, val_batches: Sequence, tokenizer) -> list[str]:
    """Batch counts and shapes, and the first training sequence decoded with its target."""
    x, y = train_batches.batch(0, 0)
    first = tokenizer.decode(x[0].tolist())
    target = tokenizer.decode(y[0].tolist())
    cap = (
        " (capped by MAX_BATCHES_PER_EPOCH)"
        if train_batches.batches_per_epoch < train_batches.windows // train_batches.batch_size
        else ""
    )
    return [
        f"📦 Training: {train_batches.batches_per_epoch} batches per epoch{cap}, "
        f"x and y of shape {tuple(x.shape)} (batch, tokens)",
        f"   Validation: {len(val_batches)} fixed batches, {sum(b[1].numel() for b in val_batches):,} target tokens",
        "   y is x shifted by one token: the model learns to predict each next token.",
        f"   x[0]: {_clip(first, 80)!r}",
        f"   y[0]: {_clip(target, 80)!r}",
    ]
