"""Figures of which layers changed: a layers x epochs heatmap, and the top-changed tensors.

Each ``*_figure`` function returns a ``matplotlib.figure.Figure`` (no pyplot state: any
backend works), so tests read its axes and labels; :func:`save_figure` writes the PNG.
Sizes follow the model: one heatmap row per layer and one bar per tensor, so GPT-2 small's
12 blocks (148 tensors, the top 20 shown) read as well as the tiny preset's 2.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from utils.training.engine import format as fmt
from utils.training.engine.naming import parse_checkpoint_filename

from .groups import KINDS, kind_of, layer_order

__all__ = [
    "DPI",
    "KIND_COLORS",
    "history_heatmap_data",
    "layer_changes_figure",
    "save_figure",
    "which_layers_figure",
]

DPI = 110
KIND_COLORS = {
    "attention": "#1f77b4",
    "MLP": "#ff7f0e",
    "layer norms": "#2ca02c",
    "embeddings": "#9467bd",
    "other": "#7f7f7f",
}
CHANGE_LABEL = "relative change  ‖θ − θ_ref‖ / ‖θ_ref‖"
HEAT_CHANGE_LABEL = "‖θ − θ_ref‖ / ‖θ_ref‖  (log scale)"
EPOCH_CHANGE_LABEL = "‖θ_end − θ_start‖ / ‖θ_start‖  (log scale)"
_ANNOTATE_MAX_CELLS = 300  # above this many heatmap cells, values are left to the colour bar
_ANNOTATE_MAX_COLUMNS = 25


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def history_heatmap_data(
    history: Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[int], np.ndarray, list[int]]:
    """The per-epoch layer changes recorded in a run's history.

    Returns:
        ``(layers, epochs, values, partial)``: layers ordered from the input up; the epochs that
        carry a record; ``values[layer, epoch]`` (NaN where not recorded or undefined); the
        epochs whose record starts at a resume step rather than the epoch start.
    """
    rows = [row for row in history if isinstance(row.get(fmt.LAYER_CHANGE_KEY), Mapping)]
    layers = layer_order(label for row in rows for label in row[fmt.LAYER_CHANGE_KEY])
    epochs = [int(row.get("epoch", i)) for i, row in enumerate(rows)]
    values = np.full((len(layers), len(rows)), np.nan)
    for j, row in enumerate(rows):
        for i, layer in enumerate(layers):
            value = row[fmt.LAYER_CHANGE_KEY].get(layer)
            if value is not None and math.isfinite(value) and value > 0:
                values[i, j] = value
    partial = [
        epoch for epoch, row in zip(epochs, rows, strict=True) if fmt.WEIGHT_CHANGE_FROM_STEP_KEY in row
    ]
    return layers, epochs, values, partial


def which_layers_figure(
    history: Sequence[Mapping[str, Any]],
    changes: Any = None,
    *,
    top: int = 20,
    title: str = "Which layers changed",
) -> Figure:
    """Cell 37's figure: the history's layers x epochs heatmap over the top tensors between two files.

    Args:
        history: the run's per-epoch rows (Cell 33's ``results["history"]``).
        changes: a ``LayerChanges`` of two files (reference, then the loaded checkpoint), or None.
        top: how many tensors the bar chart shows.

    Raises:
        ValueError: neither the history nor ``changes`` has anything to draw.
    """
    layers, epochs, values, partial = history_heatmap_data(history)
    if not epochs and changes is None:
        raise ValueError("nothing to draw: the history has no per-layer record and no files were compared")
    heat_height = 1.2 + 0.32 * max(len(layers), 3) if epochs else 0.0
    bar_height = 1.4 + 0.3 * min(top, len(changes.table)) if changes is not None else 0.0
    fig = Figure(figsize=(13, heat_height + bar_height + 0.6), layout="constrained")
    grid = fig.add_gridspec(
        2 if epochs and changes is not None else 1,
        2,
        height_ratios=[r for r in (heat_height, bar_height) if r] or [1],
        width_ratios=[1, 3],
    )
    row = 0
    if epochs:
        _draw_history_heatmap(fig, fig.add_subplot(grid[row, :]), layers, epochs, values, partial)
        row += 1
    if changes is not None:
        _draw_change_bars(fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1]), changes, -1, top)
    fig.suptitle(title, fontsize=14)
    return fig


def layer_changes_figure(changes: Any, *, top: int = 20) -> Figure:
    """The figure of ``LayerChanges.plot``: layers x files heatmap; the last file's kinds and top tensors."""
    by_layer = changes.by_layer()
    labels = list(by_layer)
    heat_height = 1.9 + 0.32 * max(len(labels), 3)  # three-line column labels under the heatmap
    bar_height = 1.4 + 0.3 * min(top, len(changes.table))
    fig = Figure(figsize=(13, heat_height + bar_height + 0.6), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[heat_height, bar_height], width_ratios=[1, 3])
    values = np.array([[_nan(v) for v in row] for row in by_layer.values()], dtype=float)
    columns = [_column_label(path, path == changes.reference) for path in changes.paths]
    _draw_heatmap(fig, fig.add_subplot(grid[0, :]), values, labels, columns, HEAT_CHANGE_LABEL, "checkpoint")
    fig.axes[0].set_title(f"Each layer against the reference: {_file_label(changes.reference)}")
    _draw_change_bars(fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1]), changes, -1, top)
    fig.suptitle("Which layers changed", fontsize=14)
    return fig


def _draw_history_heatmap(fig, ax, layers, epochs, values, partial) -> None:
    columns = [f"{epoch}*" if epoch in partial else str(epoch) for epoch in epochs]
    _draw_heatmap(
        fig, ax, values, layers, columns, EPOCH_CHANGE_LABEL, "epoch (0-based, as in checkpoint names)"
    )
    note = "  (* measured from the resume step, not the epoch start)" if partial else ""
    ax.set_title(f"How far each layer moved in each epoch (from the training history){note}")


def _draw_heatmap(fig, ax, values: np.ndarray, rows: list[str], columns: list[str], label: str, xlabel: str):
    """A log-coloured heatmap, input layers at the top; values written in the cells when they fit."""
    finite = values[np.isfinite(values) & (values > 0)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (1e-3, 1.0)
    norm = LogNorm(vmin=low, vmax=high if high > low else low * 10)
    masked = np.ma.masked_invalid(np.where(values > 0, values, np.nan))
    image = ax.imshow(masked, aspect="auto", cmap="viridis", norm=norm, interpolation="nearest")
    ax.set_yticks(range(len(rows)), rows)
    step = max(1, math.ceil(len(columns) / 30))  # at most ~30 column labels
    ax.set_xticks(range(0, len(columns), step), columns[::step])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("layer (input at the top)")
    fig.colorbar(image, ax=ax, label=label, pad=0.01)
    if values.size <= _ANNOTATE_MAX_CELLS and len(columns) <= _ANNOTATE_MAX_COLUMNS:
        middle = math.sqrt(norm.vmin * norm.vmax)
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value) and value > 0:
                color = "white" if value < middle else "black"  # viridis: dark low, light high
                ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=8, color=color)
            elif value == 0:  # the reference itself, or a tensor that did not move
                ax.text(j, i, "0", ha="center", va="center", fontsize=8, color="gray")


def _draw_change_bars(kind_ax, top_ax, changes: Any, index: int, top: int) -> None:
    """Left: each kind of tensor as one vector; right: the ``top`` tensors, coloured by kind."""
    target = changes.paths[index]
    kinds = {kind: values[index] for kind, values in changes.by_kind().items() if values[index] is not None}
    ordered = [kind for kind in KINDS if kind in kinds]
    kind_bars = kind_ax.barh(ordered, [kinds[k] for k in ordered], color=[KIND_COLORS[k] for k in ordered])
    kind_ax.bar_label(kind_bars, labels=[f"{kinds[k]:.3g}" for k in ordered], padding=2, fontsize=8)
    kind_ax.xaxis.set_major_locator(MaxNLocator(nbins=3))  # a narrow panel: few, readable ticks
    kind_ax.margins(x=0.25)
    kind_ax.invert_yaxis()
    kind_ax.set_xlabel("relative change of the group")
    kind_ax.set_title("Each kind as one vector")
    kind_ax.grid(axis="x", alpha=0.3)
    best = changes.top(index, top)
    names = [_short(name) for name, _ in best]
    bars = top_ax.barh(names, [v for _, v in best], color=[KIND_COLORS[kind_of(n)] for n, _ in best])
    top_ax.bar_label(bars, labels=[f"{v:.3g}" for _, v in best], padding=2, fontsize=8)
    top_ax.invert_yaxis()  # the largest change at the top
    top_ax.tick_params(axis="y", labelsize=8)
    undefined = sum(1 for row in changes.table.values() if row[index] is None)
    note = (
        f"\n{undefined} tensors are all zeros in the reference (biases at initialisation?): no ratio"
        if undefined
        else ""
    )
    top_ax.set_xlabel(CHANGE_LABEL + note)
    top_ax.set_title(
        f"Top {len(best)} of {len(changes.table)} tensors: {_file_label(target)} "
        f"against {_file_label(changes.reference)}"
    )
    top_ax.grid(axis="x", alpha=0.3)
    top_ax.margins(x=0.12)  # room for the value labels
    present = [kind for kind in KINDS if any(kind_of(n) == kind for n, _ in best)]
    top_ax.legend(handles=[Patch(color=KIND_COLORS[k], label=k) for k in present], loc="lower right")


def _short(name: str) -> str:
    """``transformer.h.11.mlp.c_proj.weight`` -> ``h.11.mlp.c_proj.weight``."""
    for prefix in ("transformer.", "model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _file_label(path: Path) -> str:
    """``epoch 11, step 72`` for a checkpoint name; the file name otherwise."""
    parsed = parse_checkpoint_filename(path.name)
    return f"epoch {parsed.epoch}, step {parsed.global_step}" if parsed else path.name


def _column_label(path: Path, is_reference: bool) -> str:
    parsed = parse_checkpoint_filename(path.name)
    label = f"epoch {parsed.epoch}\nstep {parsed.global_step}" if parsed else path.stem[:18]
    return label + ("\n(ref)" if is_reference else "")


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
