"""Cells 24 and 33: what a resume would restore, and the recovered training results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from utils.notebook.plots import plot_training_curves, show_png
from utils.training.engine.errors import CheckpointError
from utils.training.engine.metadata import read_checkpoint_metadata
from utils.training.engine.recovery import format_checkpoint_table, results_from_scan, scan_checkpoints

__all__ = ["preview_resume", "checkpoint_recovery", "CURVES_PNG"]

CURVES_PNG = "training_curves.png"


def preview_resume(path: Path | None, resume_setting: str) -> list[str]:
    """What resuming from ``path`` will restore and what it lacks, read without loading tensors.

    Args:
        path: the resolved checkpoint (None: a fresh start).
        resume_setting: the RESUME setting, quoted in the output.
    """
    if path is None:
        return [f"🆕 RESUME = {resume_setting!r}: a new run starts at epoch 1 (nothing is restored)"]
    meta = read_checkpoint_metadata(path)
    data = meta.get("data_state") or {}
    lines = [
        f"🔁 RESUME = {resume_setting!r} -> {path.name} ({meta['kind']} checkpoint)",
        f"   written in epoch {_one_based(meta.get('epoch'))} at global step {meta.get('global_step')}"
        + (f", after batch {data['batch_in_epoch']} of {data['batches_per_epoch']}" if data else ""),
    ]
    parts = {
        "model weights": True,
        "optimizer state": meta["has_optimizer"],
        "random generators": meta["has_rng_state"],
        "data position": bool(data),
        "metric history": bool(meta.get("history")),
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
    best = Path(results["checkpoint_path"]).name
    epoch = results["best_epoch"]
    print(
        f"\n🏆 Best: {best} (epoch {epoch}, after {_one_based(epoch)} epochs; val_loss {results['best_val_loss']:.4f})"
    )
    print(f"🕒 Latest: {Path(results['latest_checkpoint_path']).name}")
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
