"""Cells 36 and 37: compare checkpoints side by side, and see which layers changed.

The measurements are ``utils.training.analysis`` (tested there); this module decides what
the cells read from the session (``model``, ``val_batches``, ``tokenizer``, Cell 33's
``results``, Cell 34's ``load_report``), which files a setting such as
``"best, latest, earliest"`` names, and what to print when something is missing: a line
that says what to run, never a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.notebook.load_weights import resolve_checkpoint_dir
from utils.notebook.plots import show_png
from utils.training.analysis import ComparisonReport, LayerChanges, compare_checkpoints, layer_changes
from utils.training.analysis.plots import history_heatmap_data, save_figure, which_layers_figure
from utils.training.engine.errors import CheckpointError, NoCheckpointsError
from utils.training.engine.recovery import list_checkpoints, newest

__all__ = [
    "KEYWORDS",
    "Choice",
    "resolve_checkpoints",
    "compare_checkpoints_cell",
    "which_layers_cell",
    "LAYERS_PNG",
]

LAYERS_PNG = "layer_changes.png"
KEYWORDS = ("best", "latest", "earliest", "all")


@dataclass(frozen=True)
class Choice:
    """The files a setting named, in order without repeats, and notes on how each was found."""

    paths: list[Path]
    notes: list[str]


def resolve_checkpoints(spec: str | Sequence[str], folder: str | os.PathLike) -> Choice:
    """Files named by ``spec``: ``best``, ``latest``, ``earliest``, ``all``, file names or paths.

    Args:
        spec: comma-separated words (or a list): keywords pick from ``folder``'s listing (best =
            lowest val_loss; latest / earliest = highest / lowest step; all = every one, by step);
            anything else is a path, or a file name inside ``folder``.
        folder: the checkpoint folder.

    Raises:
        ValueError: an empty setting, or a name that is neither a keyword nor an existing file.
        NoCheckpointsError: a keyword was used and the folder holds no checkpoint.
    """
    words = [w.strip() for w in (spec.split(",") if isinstance(spec, str) else spec) if w.strip()]
    if not words:
        raise ValueError(f"no checkpoint named: give e.g. {', '.join(KEYWORDS[:3])!r} or file names")
    entries = list_checkpoints(folder, on_skip=None) if any(w.lower() in KEYWORDS for w in words) else []
    paths: list[Path] = []
    notes: list[str] = []
    for word in words:
        for path in _resolve_word(word, entries, Path(folder)):
            if path in paths:
                notes.append(f"{word} = #{paths.index(path) + 1} ({path.name}): listed once")
            else:
                paths.append(path)
    return Choice(paths, notes)


def _resolve_word(word: str, entries: list, folder: Path) -> list[Path]:
    keyword = word.lower()
    if keyword in KEYWORDS:
        if not entries:
            raise NoCheckpointsError(folder, "holds no checkpoint", fix="run Cell 32 (Run Training) first")
        by_step = sorted(entries, key=_recency)
        chosen = {"best": [entries[0]], "latest": [newest(entries)], "earliest": by_step[:1], "all": by_step}
        return [entry.path for entry in chosen[keyword]]
    for candidate in (Path(word).expanduser(), folder / word):
        if candidate.is_file():
            return [candidate]
    raise ValueError(
        f"{word!r} is neither a checkpoint file nor one of {', '.join(KEYWORDS)}; "
        f"use a file name from Cell 33's table (folder: {folder})"
    )


def _recency(entry) -> tuple:
    return (entry.global_step if entry.global_step is not None else -1, entry.time_order, entry.name)


def compare_checkpoints_cell(
    namespace: Mapping[str, Any],
    spec: str,
    *,
    prompt: str = "ROMEO:",
    max_new_tokens: int = 100,
    out: Callable[[str], None] = print,
) -> ComparisonReport | None:
    """Cell 36: compare the named checkpoints on ``val_batches``; prints the table and samples.

    Returns:
        The report, or None when something is missing (the printed line says what to run).
    """
    missing = [f"`{n}` (Cell {c})" for n, c in (("model", 13), ("val_batches", 12)) if n not in namespace]
    if missing:
        out(f"❌ Missing {' and '.join(missing)}: run Cells 1-13 first (after a disconnect, then Cell 33)")
        return None
    folder = resolve_checkpoint_dir(namespace)
    try:
        choice = resolve_checkpoints(spec, folder)
        out(f"📂 {folder}: comparing {len(choice.paths)} checkpoint(s) named by {spec!r}")
        for note in choice.notes:
            out(f"   ℹ️  {note}")
        tokenizer = namespace.get("tokenizer")
        return compare_checkpoints(
            namespace["model"],
            choice.paths,
            namespace["val_batches"],
            prompt=prompt if prompt and tokenizer is not None else None,
            max_new_tokens=max_new_tokens,
            tokenizer=tokenizer,
            seed=int(namespace.get("SEED", 0)),
            out=out,
        )
    except (CheckpointError, ValueError) as error:
        out(f"❌ {error}")
        return None


def which_layers_cell(
    namespace: Mapping[str, Any],
    output_dir: str | os.PathLike,
    *,
    reference: str = "earliest",
    top: int = 20,
    out: Callable[[str], None] = print,
) -> tuple[Path | None, LayerChanges | None]:
    """Cell 37: the history's layers x epochs heatmap and the top tensors from ``reference`` to the
    loaded checkpoint (Cell 34's, else Cell 33's choice), saved as one PNG and shown.

    Returns:
        (the PNG's path, the file comparison); (None, None) when there is nothing to draw.
    """
    folder = resolve_checkpoint_dir(namespace)
    entries = list_checkpoints(folder, on_skip=None)
    history = _history(namespace, entries)
    changes = None
    try:
        loaded = _loaded_path(namespace, entries)
        ref = resolve_checkpoints(reference, folder).paths[0]
        if loaded is None:
            out(f"ℹ️  No checkpoint in {folder} to compare with {ref.name}: only the history is drawn")
        elif loaded == ref:
            out(f"ℹ️  The reference is the loaded checkpoint ({ref.name}): set REFERENCE to another one")
        else:
            changes = layer_changes([ref, loaded])
    except (CheckpointError, ValueError) as error:
        out(f"❌ {error}")
    if not history_heatmap_data(history)[1] and changes is None:
        out("❌ Nothing to draw: no per-layer record in the history and no two checkpoints to compare")
        return None, None
    png = save_figure(which_layers_figure(history, changes, top=top), Path(output_dir) / LAYERS_PNG)
    for line in _summary(history, changes):
        out(line)
    out(f"🖼️  Saved {png}")
    show_png(png)
    return png, changes


def _history(namespace: Mapping[str, Any], entries: list) -> list:
    """Cell 33's history, else the newest listed checkpoint's, else the session's ``history``."""
    results = namespace.get("results")
    if isinstance(results, Mapping) and results.get("history"):
        return list(results["history"])
    latest = newest(entries)
    if latest is not None and latest.history:
        return list(latest.history)
    return list(namespace.get("history") or [])


def _loaded_path(namespace: Mapping[str, Any], entries: list) -> Path | None:
    """Cell 34's file, else Cell 33's choice, else the best listed checkpoint."""
    report = namespace.get("load_report")
    if report is not None and getattr(report, "path", None):
        return Path(report.path)
    results = namespace.get("results")
    if isinstance(results, Mapping) and results.get("checkpoint_path"):
        return Path(results["checkpoint_path"])
    return entries[0].path if entries else None


def _summary(history: list, changes: LayerChanges | None) -> list[str]:
    layers, epochs, values, partial = history_heatmap_data(history)
    lines = []
    if epochs:
        last = [(values[i, -1], layer) for i, layer in enumerate(layers) if math.isfinite(values[i, -1])]
        ranked = ", ".join(f"{layer} {value:.3g}" for value, layer in sorted(last, reverse=True)[:4])
        lines.append(f"🧭 Epoch {epochs[-1]} moved most: {ranked} (‖Δθ‖/‖θ‖ over the epoch)")
        if partial:
            lines.append(f"   * epochs {partial}: measured from the resume step, not the epoch start")
    else:
        lines.append(
            "ℹ️  The history has no per-layer record (its checkpoints predate it): only the files are compared"
        )
    if changes is not None:
        best = ", ".join(f"{name} {value:.3g}" for name, value in changes.top(-1, 3))
        lines.append(f"🏷️  {changes.paths[-1].name} against {changes.reference.name}: top {best}")
        kinds = changes.by_kind()
        lines.append(
            "   by kind: " + ", ".join(f"{k} {v[-1]:.3g}" for k, v in kinds.items() if v[-1] is not None)
        )
    return lines
