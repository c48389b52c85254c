"""Which layers changed most between checkpoints: ``layer_changes``.

For every weight tensor, ``||theta_file - theta_reference|| / ||theta_reference||`` between each
file and a reference file, streamed tensor by tensor (and piece by piece) from memory-mapped
files: the only private memory used is one piece's difference and the result table, whatever
the model's size, and each file's pages are unmapped again once read (see ``_weights``). The
training loop records the same statistic for every epoch in the history (``epoch_change``);
this function answers it for any two checkpoints, e.g. ones written by another run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.training.engine.errors import ArchitectureMismatchError

from . import _weights
from .groups import combine, kind_of, layer_of, layer_order, relative
from .norms import distances_and_norm

__all__ = ["LayerChanges", "layer_changes"]

RELEASE_ELEMENTS = 1 << 19  # 2 MiB of float32 per file stays mapped at most


@dataclass(frozen=True)
class LayerChanges:
    """The relative change of every tensor of each checkpoint against one reference.

    Attributes:
        paths: the compared files, in the order given.
        reference: the file every change is measured from.
        table: tensor name -> one relative change per path (0.0 for the reference itself; None
            where the reference tensor is all zeros, so no relative change is defined).
        distances: tensor name -> ``||theta_path - theta_reference||`` per path.
        reference_norms: tensor name -> ``||theta_reference||``.
    """

    paths: tuple[Path, ...]
    reference: Path
    table: dict[str, list[float | None]]
    distances: dict[str, list[float]]
    reference_norms: dict[str, float]

    def by_layer(self) -> dict[str, list[float | None]]:
        """Layer label ("embeddings", "block 0", ...) -> the layer's relative change per path,
        taken over the layer's tensors as one vector; layers ordered from the input up."""
        return self._grouped(layer_of, layer_order)

    def by_kind(self) -> dict[str, list[float | None]]:
        """Kind ("attention", "MLP", "layer norms", "embeddings") -> relative change per path."""
        return self._grouped(kind_of, sorted)

    def _grouped(self, group, order) -> dict[str, list[float | None]]:
        columns = [
            combine({n: (d[i], self.reference_norms[n]) for n, d in self.distances.items()}, group)
            for i in range(len(self.paths))
        ]
        labels = order(columns[0]) if columns else []
        return {label: [column[label] for column in columns] for label in labels}

    def top(self, index: int = -1, count: int = 20) -> list[tuple[str, float]]:
        """The ``count`` tensors that changed most in ``paths[index]``, largest first (None skipped)."""
        values = [(name, row[index]) for name, row in self.table.items() if row[index] is not None]
        return sorted(values, key=lambda item: -item[1])[:count]

    def plot(self, png_path: str | os.PathLike, *, top: int = 20) -> Path:
        """Save the figure (layers x checkpoints heatmap; top tensors of the last file) as a PNG.

        Returns:
            The PNG's path.
        """
        from .plots import layer_changes_figure, save_figure

        return save_figure(layer_changes_figure(self, top=top), png_path)


def layer_changes(
    paths: Sequence[str | os.PathLike], reference: str | os.PathLike | None = None
) -> LayerChanges:
    """The relative change of every weight tensor of each file against ``reference``.

    Files are memory-mapped and compared tensor by tensor: peak private memory is one piece's
    difference (a few MiB) plus the table, whatever the model's size. Every file's tensor
    names and shapes are checked against the reference before any arithmetic.

    Args:
        paths: checkpoint files (full, legacy or bare state_dict).
        reference: the file changes are measured from; default ``paths[0]``.

    Returns:
        A :class:`LayerChanges`; ``.table`` maps each tensor name to one value per path.

    Raises:
        ValueError: ``paths`` is empty.
        CheckpointError: a file cannot be read (missing, damaged, unsafe, not a checkpoint).
        ArchitectureMismatchError: a file's tensors differ from the reference's in names or shapes.
    """
    paths = tuple(Path(p) for p in paths)
    if not paths:
        raise ValueError("layer_changes() needs at least one checkpoint path")
    reference = Path(reference) if reference is not None else paths[0]
    with contextlib.ExitStack() as stack:
        opened: dict[Path, Mapping[str, torch.Tensor]] = {}
        for path in (reference, *paths):
            if path not in opened:
                opened[path] = stack.enter_context(_weights.open_checkpoint_weights(path))
        ref = opened[reference]
        for path, weights in opened.items():
            _check_same_tensors(path, weights, reference, ref)
        others = [path for path in opened if path != reference]
        distances, norms = {}, {}
        for name, tensor in ref.items():
            tensors = [(ref, tensor)] + [(opened[path], opened[path][name]) for path in others]
            found, norms[name] = distances_and_norm(
                tensor, [t for _, t in tensors[1:]], after_piece=_releaser(tensors)
            )
            by_path = dict(zip(others, found, strict=True))
            distances[name] = [by_path.get(path, 0.0) for path in paths]
    table = {name: [relative(d, norms[name]) for d in row] for name, row in distances.items()}
    return LayerChanges(paths, reference, table, distances, norms)


def _releaser(tensors: list[tuple[_weights.CheckpointWeights, torch.Tensor]]):
    """Unmap each file's pages once they are used, ``RELEASE_ELEMENTS`` at a time: the process never
    holds more than that much of every file mapped, however many GBs stream through (the pages stay
    in the page cache). Fewer, larger calls: one ``madvise`` per file per 2 MiB, not per piece."""
    numel = tensors[0][1].numel()
    pending = [0]

    def release(start: int, stop: int) -> None:
        if stop - pending[0] < RELEASE_ELEMENTS and stop < numel:
            return
        for weights, tensor in tensors:
            weights.release(tensor, pending[0], stop)
        pending[0] = stop

    return release


def _check_same_tensors(
    path: Path, weights: _weights.CheckpointWeights, reference: Path, ref: _weights.CheckpointWeights
) -> None:
    """Raise, naming both files, when ``weights`` lacks, adds or reshapes a reference tensor."""
    missing = [name for name in ref if name not in weights]
    extra = [name for name in weights if name not in ref]
    reshaped = [
        f"{name} {list(weights.shape(name))} (reference {list(ref.shape(name))})"
        for name in ref
        if name in weights and weights.shape(name) != ref.shape(name)
    ]
    problems = [
        f"{label}: {_first(names)}"
        for label, names in (("missing", missing), ("not in the reference", extra), ("other shape", reshaped))
        if names
    ]
    if problems:
        raise ArchitectureMismatchError(
            path,
            "has other weight tensors than the reference -- " + "; ".join(problems),
            expected=f"the tensor names and shapes of the reference {reference.name}",
            fix="compare checkpoints of one model (same MODEL_PRESET and settings); "
            "for another architecture pick a reference of that architecture",
        )


def _first(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
