"""Next-token log-probabilities and KL divergences with bounded temporaries.

A GPT-2 batch's logits are tokens x 50,257 floats; ``F.log_softmax`` and a naive
``(p * (log p - log q)).sum()`` would each add one or more full-size copies. Here
the conversion happens in place and the KL sum row-piece by row-piece, so the
temporaries stay at ``PIECE_ELEMENTS`` floats whatever the batch.
"""

from __future__ import annotations

import torch

__all__ = ["PIECE_ELEMENTS", "log_probs", "kl_sum"]

PIECE_ELEMENTS = 1 << 20  # 4 MiB of float32 per temporary


def log_probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """float32 log-probabilities of the next token at every position: shape (B, T, vocab).

    Args:
        model: returns ``(logits, loss)`` for ``model(x)`` (this project's GPT, nanoGPT).
        x: token ids (B, T) on the model's device.
    """
    with torch.no_grad():
        logits, _ = model(x)
        logits = logits.float().contiguous()  # no copy when already float32 and contiguous
        rows = logits.view(-1, logits.size(-1))
        step = _rows_per_piece(rows.size(-1))
        for i in range(0, rows.size(0), step):
            piece = rows[i : i + step]
            piece.sub_(torch.logsumexp(piece, dim=-1, keepdim=True))
    return logits


def kl_sum(reference: torch.Tensor, current: torch.Tensor, valid: torch.Tensor) -> float:
    """Sum over the ``valid`` positions of KL(reference || current), in nats.

    Args:
        reference, current: log-probabilities (B, T, vocab).
        valid: bool (B, T), False for ignored positions.
    """
    vocab = reference.size(-1)
    ref, cur, mask = reference.reshape(-1, vocab), current.reshape(-1, vocab), valid.reshape(-1)
    step = _rows_per_piece(vocab)
    total = torch.zeros((), dtype=torch.float64, device=reference.device)
    with torch.no_grad():
        for i in range(0, ref.size(0), step):
            r, c = ref[i : i + step], cur[i : i + step]
            per_row = (r.exp() * (r - c)).sum(-1)
            total += per_row[mask[i : i + step]].double().sum()
    return float(total)


def _rows_per_piece(vocab: int) -> int:
    return max(1, PIECE_ELEMENTS // max(vocab, 1))
