"""Cells 24 and 33: what a resume would restore, and the recovered training results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from utils.notebook.plots import plot_training_curves, show_png
from utils.training.engine.errors import CheckpointError, NoCheckpointsError
from utils.training.engine.metadata import read_checkpoint_metadata
from utils.training.engine.record import KINDS
from utils.training.engine.recovery import format_checkpoint_table, results_from_scan, scan_checkpoints
from utils.training.engine.text import safe_text
from utils.training.resume import resolve_resume_source

__all__ = ["preview_resume", "resume_source", "checkpoint_recovery", "CURVES_PNG"]

CURVES_PNG = "training_curves.png"


def resume_source(resume_setting: Any, checkpoint_dir: str | os.PathLike) -> tuple[Path | None, list[str]]:
    """Cell 24: the file RESUME names, and what a resume from it restores, in printable lines.

    ``RESUME = "latest"`` on a folder without a valid checkpoint (a runtime that died before
    its first save finished) starts a new run instead of stopping "Run all", and says so loudly,
    with every file it skipped: checkpoints kept elsewhere (Drive not mounted?) must not be
    missed silently.

    Raises:
        CheckpointNotFoundError, ResumeError: RESUME names a file that does not exist, or a folder.
    """
    try:
        path = resolve_resume_source(resume_setting, checkpoint_dir)
    except NoCheckpointsError:
        scan = scan_checkpoints(checkpoint_dir)
        lines = [
            f"⚠️  RESUME = {resume_setting!r}, but {safe_text(checkpoint_dir)} holds no valid checkpoint: "
            "a NEW run starts at epoch 1.",
            "   (A runtime that disconnected before its first save leaves no checkpoint.)",
            "   If your checkpoints are elsewhere, stop here and set CHECKPOINT_DIR to their folder "
            "(on Colab: mount Google Drive in Cell 4 first).",
        ]
        lines += [f"   skipped: {safe_text(p.name, 120)}: {safe_text(reason)}" for p, reason in scan.skipped]
        return None, lines
    return path, preview_resume(path, resume_setting)


def preview_resume(path: Path | None, resume_setting: str) -> list[str]:
    """What resuming from ``path`` will restore and what it lacks, read without loading tensors.

    Args:
        path: the resolved checkpoint (None: a fresh start).
        resume_setting: the RESUME setting, quoted in the output.
    """
    if path is None:
        return [f"🆕 RESUME = {resume_setting!r}: a new run starts at epoch 1 (nothing is restored)"]
    record = read_checkpoint_metadata(path)
    data = record.data_state or {}
    position = data.get("batch_in_epoch"), data.get("batches_per_epoch")
    lines = [
        f"🔁 RESUME = {resume_setting!r} -> {safe_text(path.name, 120)} ({KINDS.get(record.kind, record.kind)})",
        f"   written in epoch {_one_based(record.epoch)} at global step {_or_unknown(record.global_step)}"
        + (f", after batch {position[0]} of {position[1]}" if None not in position else ""),
    ]
    parts = {
        "model weights": True,
        "optimizer state": record.has_optimizer,
        "random generators": record.has_rng_state,
        "data position": None not in position,
        "metric history": bool(record.history),
    }
    lines.append("   will restore: " + ", ".join(name for name, ok in parts.items() if ok))
    missing = [name for name, ok in parts.items() if not ok]
    if missing:
        lines.append("   ⚠️  missing: " + ", ".join(missing) + " (Cell 25 says what will differ)")
    else:
        lines.append("   ✅ complete: the run will continue exactly where it stopped")
    return lines


def _one_based(epoch: Any) -> str:
    return str(epoch + 1) if isinstance(epoch, int) else "?"


def _or_unknown(value: Any) -> str:
    return "?" if value is None else str(value)


def _best_line(best) -> str:
    """The best checkpoint in words; says so when no checkpoint has a validation loss yet."""
    name = safe_text(best.name, 120)
    if best.val_loss is None:
        return (
            f"Best: {name} -- no checkpoint has a validation loss yet (saved before an epoch ended, or "
            "without metrics), so the newest is used"
        )
    epoch = best.epoch
    when = f"epoch {epoch}, after {_one_based(epoch)} epochs; " if epoch is not None else ""
    return f"Best: {name} ({when}val_loss {best.val_loss:.4f})"


def checkpoint_recovery(checkpoint_dir: str | os.PathLike, output_dir: str | os.PathLike) -> dict | None:
    """Rebuild ``results`` from the checkpoints' metadata, print the table, save and show the curves.

    Returns:
        The results dict (see recover_training_results), or None when the folder
        holds no valid checkpoint (the message printed says what to do).
    """
    scan = scan_checkpoints(checkpoint_dir)
    print(f"📂 Checkpoint folder: {checkpoint_dir}  ({len(scan.checkpoints)} valid, best val_loss first)\n")
    print(format_checkpoint_table(scan.checkpoints, scan.skipped))
    try:
        results = results_from_scan(scan, checkpoint_dir)  # the listing above, not a second scan
    except CheckpointError as error:
        print(f"\n❌ {error}")
        return None
    best, latest = results["best"], results["latest"]
    epoch = results["best_epoch"]
    print(f"\n🏆 {_best_line(best)}")
    print(f"🕒 Latest: {safe_text(latest.name, 120)} (step {_or_unknown(latest.global_step)})")
    print(f"📈 History: {len(results['history'])} epochs recovered without loading any weights")
    png = plot_training_curves(
        results["history"],
        Path(output_dir) / CURVES_PNG,
        best_epoch=epoch,
        title="Training curves (from checkpoints)",
    )
    print(f"🖼️  Saved {png}")
    show_png(png)
    print("✅ `results` is set: Cell 34 loads results['checkpoint_path']")
    return results
