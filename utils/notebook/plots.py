"""The notebook's figures: training curves (Cell 33), LR schedule (Cell 19), dashboard.

Every function draws on a fresh ``matplotlib.figure.Figure`` (no pyplot global
state, so it works with any backend, Agg included), saves a PNG and returns
its path; ``show_png`` displays a saved PNG inside a notebook.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_training_curves", "plot_lr_schedule", "plot_dashboard", "moving_average", "show_png"]

DPI = 110
# Checkpoints count epochs from 0 (file names, Cell 33, Cell 34); the plots use the same numbers.
EPOCH_LABEL = "epoch (0-based, as in checkpoint names)"
TRAIN_COLOR, VAL_COLOR, LR_COLOR, STEP_COLOR = "#1f77b4", "#d62728", "#2ca02c", "#9ecae1"


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Centred mean over ``window`` values (fewer at the ends), same length as ``values``.

    Centred rather than trailing, so the smoothed curve does not lag behind the
    raw one where the loss falls fast (the first steps).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    half = window // 2
    prefix = [0.0]
    for value in values:
        prefix.append(prefix[-1] + value)
    out = []
    for i in range(len(values)):
        lo, hi = max(0, i - half), min(len(values), i + half + 1)
        out.append((prefix[hi] - prefix[lo]) / (hi - lo))
    return out


def _column(history: Sequence[Mapping], key: str) -> tuple[list[float], list[float]]:
    """(x, y) of one metric; rows without the metric left out.

    x is the epoch as stored (0-based), the number the checkpoint names, the Cell 33 table and
    Cell 34's panels show, so that "best (epoch 19)" here is the file ``..._epoch0019_...``.
    """
    points = [(row.get("epoch", i), row.get(key)) for i, row in enumerate(history)]
    points = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
    return [x for x, _ in points], [y for _, y in points]


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def _draw_epoch_losses(ax, history: Sequence[Mapping], best_epoch: int | None = None) -> None:
    # the train loss is the mean over the epoch's steps, so it trails the end-of-epoch validation loss
    series = (
        ("train_loss", "train (mean over the epoch)", TRAIN_COLOR),
        ("val_loss", "validation (epoch end)", VAL_COLOR),
    )
    for key, label, color in series:
        x, y = _column(history, key)
        if x:
            ax.plot(x, y, "o-", color=color, label=label)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="gray", linestyle=":", label=f"best (epoch {best_epoch})")
    ax.set_xlabel(EPOCH_LABEL)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cross-entropy loss")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def plot_training_curves(
    history: Sequence[Mapping], path: str | os.PathLike, *, best_epoch: int | None = None, title: str = ""
) -> Path:
    """Train and validation loss per epoch, the best epoch marked (Cell 33).

    Args:
        history: per-epoch dicts with "epoch" (0-based), "train_loss", "val_loss".
        path: where the PNG goes.
        best_epoch: 0-based epoch to mark, if any.

    Returns:
        The PNG's path.
    """
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    _draw_epoch_losses(ax, history, best_epoch)
    ax.set_title(title or "Training curves")
    return _save(fig, path)


def plot_lr_schedule(
    learning_rates: Sequence[float], path: str | os.PathLike, *, steps_per_epoch: int = 0
) -> Path:
    """The learning rate of every optimizer step, epoch boundaries dotted (Cell 19)."""
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    ax.plot(range(1, len(learning_rates) + 1), learning_rates, color=LR_COLOR)
    for boundary in range(steps_per_epoch, len(learning_rates), steps_per_epoch or len(learning_rates) + 1):
        label = "epoch boundary" if boundary == steps_per_epoch else None
        ax.axvline(boundary + 0.5, color="gray", linestyle=":", linewidth=0.8, label=label)
    if steps_per_epoch and steps_per_epoch < len(learning_rates):
        ax.legend(loc="upper right")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning-rate schedule")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_dashboard(
    history: Sequence[Mapping],
    path: str | os.PathLike,
    *,
    step_losses: Sequence[float] = (),
    learning_rates: Sequence[float] = (),
    best_epoch: int | None = None,
) -> Path:
    """Four panels: per-step loss, per-epoch losses, learning rate, validation perplexity.

    Args:
        history: per-epoch dicts (epoch, train_loss, val_loss, learning_rate).
        path: where the PNG goes.
        step_losses: the training loss of every step (may be empty).
        learning_rates: the learning rate of every step; falls back to the per-epoch values.
        best_epoch: 0-based epoch to mark.
    """
    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2)
    _draw_step_losses(axes[0][0], step_losses)
    _draw_epoch_losses(axes[0][1], history, best_epoch)
    axes[0][1].set_title("Loss per epoch")
    _draw_learning_rate(axes[1][0], history, learning_rates)
    _draw_perplexity(axes[1][1], history)
    fig.suptitle("Training dashboard", fontsize=14)
    return _save(fig, path)


def _draw_step_losses(ax, step_losses: Sequence[float]) -> None:
    ax.set_title("Training loss per step")
    if not len(step_losses):
        ax.text(0.5, 0.5, "no per-step losses recorded", ha="center", va="center", transform=ax.transAxes)
        return
    steps = range(1, len(step_losses) + 1)
    ax.plot(steps, step_losses, color=STEP_COLOR, linewidth=0.8, label="step loss")
    window = min(51, max(1, len(step_losses) // 40))
    smooth = moving_average(list(step_losses), window)
    ax.plot(steps, smooth, color=TRAIN_COLOR, label=f"smoothed ({window}-step mean)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()


def _draw_learning_rate(ax, history: Sequence[Mapping], learning_rates: Sequence[float]) -> None:
    ax.set_title("Learning rate")
    if len(learning_rates):
        ax.plot(range(1, len(learning_rates) + 1), learning_rates, color=LR_COLOR)
        ax.set_xlabel("optimizer step")
    else:
        x, y = _column(history, "learning_rate")
        ax.plot(x, y, "o-", color=LR_COLOR)
        ax.set_xlabel(EPOCH_LABEL)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)


def _draw_perplexity(ax, history: Sequence[Mapping]) -> None:
    ax.set_title("Validation perplexity (lower is better)")
    x, y = _column(history, "val_loss")
    ax.plot(x, [math.exp(min(v, 50.0)) for v in y], "o-", color=VAL_COLOR)
    ax.set_xlabel(EPOCH_LABEL)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("perplexity")
    ax.grid(alpha=0.3)


def show_png(path: str | os.PathLike) -> None:
    """Display a saved PNG in the running notebook; outside IPython print its path."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # plain Python without IPython
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Image(filename=str(path)))
    else:
        print(f"🖼️  {path}")
