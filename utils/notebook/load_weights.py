"""Cell 34, "Load Model Weights from Checkpoint": the orchestration behind the thin cell.

The approved design (docs/loading-weights.md describes its contract) fixes what the
cell prints; the loading itself is ``load_model_weights`` and the panels are the
pure renderers in ``utils.notebook.panels``. This module decides:

* the prerequisites: ``model`` exists (else the design's scenario 1), and the
  folder holds checkpoints (else scenario 2);
* which file: the manual override line > Cell 33's ``results['checkpoint_path']``
  > the first (best) of ``list_checkpoints()``; "🔍 Selection Method:" names the rule;
* what to print for each failure: a panel, never a traceback, and for a damaged
  file the next valid checkpoint to try;
* the evidence that the weights are trained: the loss on a validation batch;
* with ``PICKER``, a dropdown and a Load button under the panels (``picker.py``); a
  click goes through the same ``load_selection`` as the cell.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from utils.notebook.durability import wait_for_pending_saves
from utils.notebook.panels import (
    render_available_checkpoints,
    render_device_failure,
    render_load_error,
    render_load_report,
    render_model_not_found,
    render_no_checkpoints,
    render_selection,
)
from utils.notebook.picker import CheckpointPicker, can_show_picker
from utils.training.engine.errors import CheckpointError
from utils.training.engine.loading import LoadReport, ModelMoveError, load_model_weights
from utils.training.engine.prefixes import unwrap_model
from utils.training.engine.record import CheckpointRecord
from utils.training.engine.recovery import scan_checkpoints
from utils.training.loop import evaluate

__all__ = ["Selection", "choose_checkpoint", "resolve_checkpoint_dir", "load_selection", "load_weights_cell"]

DEFAULT_CHECKPOINT_DIR = "./checkpoints"


@dataclass(frozen=True)
class Selection:
    """The file Cell 34 will load, the rule that chose it, and its place in the listing."""

    path: Path
    method: str  # "manual" | "cell33" | "auto" | "picker" (the keys of panels.SELECTION_METHODS)
    index: int | None


def resolve_checkpoint_dir(namespace: MutableMapping[str, Any], checkpoint_dir=None) -> Path:
    """The folder to list: the argument > Cell 33's folder > CHECKPOINT_DIR > ./checkpoints."""
    results = namespace.get("results")
    for candidate in (
        checkpoint_dir,
        results.get("checkpoint_dir") if isinstance(results, dict) else None,
        namespace.get("CHECKPOINT_DIR"),
    ):
        if candidate:
            return Path(candidate).expanduser()
    return Path(DEFAULT_CHECKPOINT_DIR)


def _index_of(path: Path, checkpoints: list[CheckpointRecord]) -> int | None:
    target = os.path.realpath(path)
    return next((i for i, info in enumerate(checkpoints) if os.path.realpath(info.path) == target), None)


def choose_checkpoint(
    checkpoints: list[CheckpointRecord], results: Any = None, manual_path: str | os.PathLike | None = None
) -> Selection | None:
    """Apply the design's priority: manual override > Cell 33's choice > best of the listing.

    Args:
        checkpoints: the listing, best first.
        results: Cell 33's ``results`` dict (or anything else, ignored).
        manual_path: the path from the cell's manual override line.

    Returns:
        The selection, or None when there is nothing to choose from.
    """
    if manual_path:
        path = Path(manual_path).expanduser()
        return Selection(path, "manual", _index_of(path, checkpoints))
    chosen = results.get("checkpoint_path") if isinstance(results, dict) else None
    if chosen:
        return Selection(Path(chosen), "cell33", _index_of(Path(chosen), checkpoints))
    if checkpoints:
        return Selection(Path(checkpoints[0].path), "auto", 0)
    return None


def _next_candidate(selection: Selection, checkpoints: list[CheckpointRecord]) -> str | None:
    """The best listed checkpoint that is not the selected one (for a damaged selection)."""
    return next((info.name for i, info in enumerate(checkpoints) if i != selection.index), None)


def _validation_loss(model: torch.nn.Module, val_batches: Any, amp_dtype: torch.dtype | None) -> float | None:
    """Loss on the first validation batch, in training's precision: evidence the weights are trained."""
    return evaluate(model, list(val_batches[:1]), amp_dtype=amp_dtype) if val_batches else None


def load_weights_cell(
    namespace: MutableMapping[str, Any],
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    manual_path: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    check_integrity: bool = True,
    strict: bool = True,
    freeze_loaded: bool = False,
    device: str | torch.device | None = None,
    picker: bool = False,
    out: Callable[[str], None] = print,
) -> Any:
    """Everything Cell 34 does: wait for a pending background save, check, list, select, load,
    verify, print the panels.

    Args:
        namespace: the notebook's ``globals()``: ``model`` is read from it (and loaded
            in place), ``results`` (Cell 33), ``CHECKPOINT_DIR``, ``device``,
            ``val_batches`` and ``amp_dtype`` (Cell 20) are used when present.
        checkpoint_dir: the folder to list; default Cell 33's folder, then CHECKPOINT_DIR.
        manual_path: the manual override (the cell's commented line, once uncommented).
        trust_pickle: allow a file that needs arbitrary unpickling (trusted files only).
        check_integrity: compare the weights' bytes with the file's CRC-32s before loading
            (about one more read of the weights; catches damage torch.load lets through).
        strict: every tensor must fit (the design's default); False loads what fits and prints a
            PARTIAL LOAD panel (transfer learning).
        freeze_loaded: with a load, freeze the parameters that came from the file.
        device: where the model goes; default the notebook's ``device``, else CUDA when available.
        picker: also show a dropdown of the checkpoints and a Load button under the panels
            (``PICKER``), where a widget front end and ipywidgets are there (else the text
            path alone). The picker owns ``load_report``: it is set in ``namespace`` now and
            after each successful click.
        out: where the panels go (print).

    Returns:
        Without ``picker``: the LoadReport, or None when a prerequisite is missing or the
        load failed (the panel printed says why; the model is unchanged). With ``picker``:
        the ``CheckpointPicker`` (``.dropdown``, ``.button``, ``.output``, ``.report``), or
        None when it is not shown (no front end, no ipywidgets, nothing to pick).
    """
    options = dict(
        trust_pickle=trust_pickle, check_integrity=check_integrity, strict=strict, freeze_loaded=freeze_loaded,
        device=device,
    )  # fmt: skip
    wait_for_pending_saves(out)  # a checkpoint still being written in the background is listed complete
    report, listing = _load_by_priority(namespace, checkpoint_dir, manual_path, options, out)
    if not picker:
        return report
    namespace["load_report"] = report
    if listing is None or not can_show_picker(namespace):
        return None
    checkpoints, selection = listing
    load = partial(_load_listed, namespace, checkpoints, options)
    checkpoint_picker = CheckpointPicker(checkpoints, selection.index, report, load, namespace)
    checkpoint_picker.show()
    return checkpoint_picker


def _load_by_priority(
    namespace: MutableMapping[str, Any],
    checkpoint_dir: str | os.PathLike | None,
    manual_path: str | os.PathLike | None,
    options: dict[str, Any],
    out: Callable[[str], None],
) -> tuple[LoadReport | None, tuple[list[CheckpointRecord], Selection] | None]:
    """The text path: the design's prerequisites, then the file its priority selects.

    Returns:
        The report (None when nothing was loaded) and, once a model and a listing exist,
        the listing and the selection (what a picker offers); else None.
    """
    if not isinstance(namespace.get("model"), torch.nn.Module):
        out(render_model_not_found())
        return None, None
    folder = resolve_checkpoint_dir(namespace, checkpoint_dir)
    if manual_path and checkpoint_dir is None:
        folder = Path(manual_path).expanduser().parent  # list the manual file's neighbours
    scan = scan_checkpoints(folder)
    selection = choose_checkpoint(scan.checkpoints, namespace.get("results"), manual_path)
    if selection is None or (not scan.checkpoints and selection.method != "manual"):
        out(render_no_checkpoints(folder, scan.skipped))
        return None, None
    report = load_selection(namespace, selection, scan.checkpoints, out=out, **options)
    return report, ((scan.checkpoints, selection) if scan.checkpoints else None)


def _load_listed(
    namespace: MutableMapping[str, Any],
    checkpoints: list[CheckpointRecord],
    options: dict[str, Any],
    index: int,
    out: Callable[[str], None],
) -> LoadReport | None:
    """What the picker's Load button does: entry ``index`` of the listing, through load_selection."""
    selection = Selection(Path(checkpoints[index].path), "picker", index)
    return load_selection(namespace, selection, checkpoints, out=out, **options)


def load_selection(
    namespace: MutableMapping[str, Any],
    selection: Selection,
    checkpoints: list[CheckpointRecord],
    *,
    trust_pickle: bool = False,
    check_integrity: bool = True,
    strict: bool = True,
    freeze_loaded: bool = False,
    device: str | torch.device | None = None,
    out: Callable[[str], None] = print,
) -> LoadReport | None:
    """Load one selected file into the notebook's ``model`` and print its panels.

    The one loading path of Cell 34: the text cell and the picker's Load button both
    call it, so a click prints what the cell prints for the same file.

    Args:
        namespace: the notebook's ``globals()``; ``model`` is read now (the current one).
        selection: the file and the rule that chose it.
        checkpoints: the listing (AVAILABLE CHECKPOINTS, the selection marked).
        trust_pickle, check_integrity, strict, freeze_loaded, device: as for :func:`load_weights_cell`.
        out: where the panels go.

    Returns:
        The LoadReport, or None when the load failed (a panel says why; the model is unchanged).
    """
    model = namespace.get("model")
    if not isinstance(model, torch.nn.Module):
        out(render_model_not_found())
        return None
    out(render_available_checkpoints(checkpoints, selection.index))
    out(render_selection(selection.path.name, selection.method))
    target = device if device is not None else namespace.get("device")
    try:
        report = load_model_weights(
            model, selection.path, target, trust_pickle=trust_pickle, check_integrity=check_integrity,
            strict=strict, freeze_loaded=freeze_loaded,
        )  # fmt: skip
    except CheckpointError as error:
        out(render_load_error(error, _next_candidate(selection, checkpoints)))
        return None
    except (ValueError, RuntimeError) as error:  # DEVICE='cuda' without a GPU; CUDA out of memory
        out(render_device_failure(error, target, loaded=isinstance(error, ModelMoveError)))
        return None
    loss = _validation_loss(model, namespace.get("val_batches"), namespace.get("amp_dtype"))
    vocab = getattr(getattr(unwrap_model(model), "config", None), "vocab_size", None)
    out(render_load_report(report, validation_loss=loss, vocab_size=vocab))
    return report
