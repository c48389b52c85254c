"""The one place the analysis reads checkpoint files: their weights, name -> memory-mapped tensor.

Everything in this package that needs a file's tensors (``layer_changes``, the epoch-start
weights of a resumed run) goes through :func:`open_checkpoint_weights`, so switching to the
engine's ``sources`` API (``WeightSet``: every supported checkpoint kind, tensors read lazily)
is a change to this module alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from utils.training.engine.errors import NotACheckpointError
from utils.training.engine.format import describe_object, model_state_of
from utils.training.engine.prefixes import strip_wrapper_prefixes
from utils.training.engine.reading import read_checkpoint_file
from utils.training.engine.tensor_checks import storage_key

__all__ = ["open_checkpoint_weights"]


@contextlib.contextmanager
def open_checkpoint_weights(path: str | os.PathLike) -> Iterator[Mapping[str, torch.Tensor]]:
    """The floating-point weights of a checkpoint, each tied tensor once, under clean names.

    Tensors are views of the memory-mapped file (zip-format files): touching one reads its pages
    from the page cache, and nothing is copied into private memory. The mapping is released
    when the ``with`` block ends.

    Args:
        path: a checkpoint file of any kind the engine's reader accepts (full, legacy, bare).

    Yields:
        name -> CPU tensor, in the file's order (``module.`` / ``_orig_mod.`` prefixes removed).

    Raises:
        CheckpointError: the reader's errors (missing, damaged, unsafe file).
        NotACheckpointError: a readable file without model weights.
    """
    path = Path(path)
    loaded = read_checkpoint_file(path)
    try:
        weights = model_state_of(loaded.obj)
        if weights is None:
            raise NotACheckpointError(
                path,
                f"holds {describe_object(loaded.obj)}, not model weights",
                expected="a checkpoint with 'model_state_dict', or a state_dict of tensors",
                fix="pick a checkpoint written by Cell 32 (Run Training), or save model.state_dict()",
            )
        renamed, _ = strip_wrapper_prefixes(weights)
        yield _distinct_floats(renamed)
    finally:
        del loaded  # the last reference to the mapped storages: the file is unmapped


def _distinct_floats(weights: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Floating-point tensors only (no integer buffers), the first name of each tied tensor."""
    seen: set[tuple] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            continue
        key = storage_key(tensor)
        if key not in seen:
            seen.add(key)
            out[name] = tensor
    return out
