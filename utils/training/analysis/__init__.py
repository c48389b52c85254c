"""Look inside checkpoints: compare them on the same batches, and see which layers changed.

    from utils.training.analysis import compare_checkpoints, layer_changes

``compare_checkpoints`` evaluates several checkpoints on the same batches (loss, perplexity,
top-1 agreement and KL divergence against the first, the same prompt sampled with the same
seed) in one scratch copy of the model. ``layer_changes`` measures, per weight tensor, how far
each file moved from a reference file, streaming the tensors from memory-mapped files. The
training loop records the same per-tensor change for every epoch (``epoch_change``).
"""

from utils.training.analysis.changes import LayerChanges, layer_changes
from utils.training.analysis.compare import ComparisonReport, ComparisonRow, compare_checkpoints
from utils.training.analysis.epoch_change import EpochStart

__all__ = [
    "ComparisonReport",
    "ComparisonRow",
    "EpochStart",
    "LayerChanges",
    "compare_checkpoints",
    "layer_changes",
]
