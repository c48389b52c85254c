"""Where a parameter sits in a GPT: its layer (for the heatmap) and its kind (for the bar chart).

One rule for the training loop's per-epoch record, for ``layer_changes`` and for the
plots, so a layer's row in the heatmap and its bars always mean the same tensors.
Names follow nanoGPT (``transformer.h.3.attn.c_attn.weight``); the patterns also
cover the usual Hugging Face / Llama spellings (``layers.3.self_attn.q_proj.weight``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

__all__ = ["KINDS", "layer_of", "kind_of", "layer_order", "combine", "relative"]

# The bar chart's groups, in the order its legend lists them.
KINDS = ("attention", "MLP", "layer norms", "embeddings", "other")

_BLOCK = re.compile(r"(?:^|\.)(?:h|layers?|blocks?)\.(\d+)\.")
_EMBEDDING = re.compile(r"(?:^|\.)(?:wte|wpe|embed\w*|tok_embeddings|lm_head|output)(?:\.|$)")
_NORM = re.compile(r"(?:^|\.)(?:ln\w*|\w*norm\w*)(?:\.|$)")
_ATTENTION = re.compile(r"(?:^|\.)(?:\w*attn\w*|\w*attention\w*|[qkvo]_proj)(?:\.|$)")
_MLP = re.compile(r"(?:^|\.)(?:mlp|ffn|feed_forward|c_fc|fc\d?|w[123]|gate_proj|up_proj|down_proj)(?:\.|$)")


def layer_of(name: str) -> str:
    """The heatmap row of a parameter: ``"embeddings"``, ``"block N"``, ``"final norm"``,
    ``"output head"`` or ``"other"``."""
    block = _BLOCK.search(name)
    if block:
        return f"block {int(block.group(1))}"
    if "lm_head" in name or re.search(r"(?:^|\.)output\.", name):
        return "output head"
    if _EMBEDDING.search(name):
        return "embeddings"
    if _NORM.search(name):
        return "final norm"
    return "other"


def kind_of(name: str) -> str:
    """The bar chart's group of a parameter: one of :data:`KINDS`."""
    if _EMBEDDING.search(name):
        return "embeddings"
    if _NORM.search(name):
        return "layer norms"
    if _ATTENTION.search(name):
        return "attention"
    if _MLP.search(name):
        return "MLP"
    return "other"


def layer_order(labels: Iterable[str]) -> list[str]:
    """Layers from the input upwards: embeddings, block 0, 1, ..., final norm, output head, other."""
    fixed = {"embeddings": -1, "final norm": 1 << 20, "output head": (1 << 20) + 1, "other": (1 << 20) + 2}

    def position(label: str) -> int:
        return int(label.split()[1]) if label.startswith("block ") else fixed.get(label, (1 << 20) + 3)

    return sorted(set(labels), key=lambda label: (position(label), label))


def relative(distance: float, norm: float) -> float | None:
    """``distance / norm``; 0.0 when nothing moved, None when the start is all zeros (undefined)."""
    if distance == 0.0:
        return 0.0
    return distance / norm if norm > 0.0 else None


def combine(norms: Mapping[str, tuple[float, float]], group) -> dict[str, float | None]:
    """The relative change of each group of tensors, taken over the group as one vector.

    Args:
        norms: tensor name -> (``||end - start||``, ``||start||``).
        group: tensor name -> group label (``layer_of`` or ``kind_of``).

    Returns:
        label -> ``sqrt(sum distance^2) / sqrt(sum norm^2)`` (so big matrices weigh more than
        biases, as in the layer's own parameter vector).
    """
    sums: dict[str, list[float]] = {}
    for name, (distance, norm) in norms.items():
        total = sums.setdefault(group(name), [0.0, 0.0])
        total[0] += distance * distance
        total[1] += norm * norm
    return {label: relative(math.sqrt(d2), math.sqrt(n2)) for label, (d2, n2) in sums.items()}
