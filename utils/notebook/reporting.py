"""Cells 32, 40 and 42: the training summary, the dashboard, and where everything is."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from utils.notebook.model_views import schedule_preview
from utils.notebook.planning import format_bytes, format_duration
from utils.notebook.plots import plot_dashboard
from utils.training.engine.errors import CheckpointError
from utils.training.engine.format import STEP_LOSSES_KEY
from utils.training.engine.recovery import newest, recover_training_results, scan_checkpoints
from utils.training.engine.sources import open_checkpoint
from utils.training.engine.text import safe_text

__all__ = ["training_summary", "step_losses_of", "build_dashboard", "final_summary", "DASHBOARD_PNG"]

DASHBOARD_PNG = "training_dashboard.png"


def training_summary(run) -> list[str]:
    """What the training cell did, from its TrainingRun."""
    lines = [
        f"🏁 Training finished: {run.epochs_completed} epochs completed, {run.global_step} steps in all, "
        f"{format_duration(run.elapsed_s)} this session",
    ]
    if run.resumed_from:
        lines.append(f"🔁 Resumed from {Path(run.resumed_from).name}")
    if run.best_val_loss is not None:
        lines.append(f"🏆 Best val_loss: {run.best_val_loss:.4f}")
    if run.best_checkpoint:  # the best file this session wrote, not the folder's (another run's) best
        lines.append(f"💾 Best checkpoint written this session: {run.best_checkpoint}")
    lines.append(f"💾 Checkpoints written this session: {len(run.checkpoints)}")
    if getattr(run, "save_wait_s", 0.0) > 0.05:
        lines.append(
            f"⏳ Training waited {format_duration(run.save_wait_s)} in all for earlier background saves to finish "
            "(raise SAVE_EVERY_STEPS to avoid it)"
        )
    mirror = getattr(run, "mirror", None)
    if mirror is not None:
        failed = f", {len(mirror.failures)} failed (see above)" if mirror.failures else ""
        lines.append(f"☁️  Mirror {mirror.folder}: {len(mirror.copied)} copied and verified{failed}")
    if run.stop_reason:
        lines.append(f'⏹  Stopped early: {run.stop_reason} (set RESUME = "latest" to continue)')
    lines += [f"⚠️  {failure}" for failure in run.save_failures]
    return lines


def step_losses_of(checkpoint_path: str | os.PathLike | None) -> list[float]:
    """The per-step training losses stored in a checkpoint (memory-mapped: the weights are not read).

    A file that cannot be read gives no losses and one printed line saying why: the
    dashboard then shows the per-epoch curves without the per-step one.
    """
    if not checkpoint_path:
        return []
    try:
        with open_checkpoint(checkpoint_path) as checkpoint:
            state = checkpoint.training_state() or {}
            losses = state.get(STEP_LOSSES_KEY)
            return [float(v) for v in losses.tolist()] if isinstance(losses, torch.Tensor) else []
    except CheckpointError as error:
        name = safe_text(Path(checkpoint_path).name, 120)
        print(f"⚠️  No per-step loss curve: {name} cannot be read ({safe_text(error.problem)})")
        return []


def build_dashboard(namespace: Mapping[str, Any], output_dir: str | os.PathLike) -> Path:
    """Draw the training dashboard from what the session holds.

    Uses Cell 33's ``results`` (or recovers them from ``CHECKPOINT_DIR``), this
    session's ``run`` for per-step losses (else the latest checkpoint's), and the
    ``scheduler`` for the per-step learning rate.

    Raises:
        NoCheckpointsError: no results and no checkpoints to recover them from.
    """
    results = namespace.get("results")
    if not isinstance(results, dict):
        results = recover_training_results(namespace.get("CHECKPOINT_DIR", "./checkpoints"))
    run = namespace.get("run")
    steps = list(run.step_losses) if run is not None and getattr(run, "step_losses", None) else []
    if not steps:
        steps = step_losses_of(results.get("latest_checkpoint_path"))
    scheduler = namespace.get("scheduler")
    rates = schedule_preview(scheduler, len(steps)) if scheduler is not None and steps else []
    return plot_dashboard(
        results["history"],
        Path(output_dir) / DASHBOARD_PNG,
        step_losses=steps,
        learning_rates=rates,
        best_epoch=results.get("best_epoch"),
    )


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


def final_summary(
    checkpoint_dir: str | os.PathLike, output_dir: str | os.PathLike, extra: dict[str, Any] | None = None
) -> list[str]:
    """Where everything this run produced lies, and how to continue."""
    checkpoint_dir, output_dir = Path(checkpoint_dir), Path(output_dir)
    scan = scan_checkpoints(checkpoint_dir)
    total = sum(info.size_bytes for info in scan.checkpoints)
    lines = [
        f"💾 Checkpoints: {checkpoint_dir.resolve()} ({len(scan.checkpoints)} files, {format_bytes(total)})"
    ]
    if scan.checkpoints:
        best = scan.checkpoints[0]
        latest = newest(scan.checkpoints)  # the file RESUME = "latest" picks
        best_name, latest_name = safe_text(best.name, 120), safe_text(latest.name, 120)
        lines.append(
            f"   🏆 best:   {best_name} (val_loss {best.val_loss:.4f})"
            if best.val_loss is not None
            else f"   🏆 best:   {best_name} (no validation loss yet)"
        )
        lines.append(f"   🕒 latest: {latest_name} (step {latest.global_step})")
    lines.append(f"📁 Outputs: {output_dir.resolve()}")
    for path in (
        _files(output_dir, "*.png") + _files(output_dir, "*.json") + _files(output_dir, "*.safetensors")
    ):
        lines.append(f"   - {safe_text(path.name, 120)} ({format_bytes(path.stat().st_size)})")
    for label, value in (extra or {}).items():
        lines.append(f"{label}: {value}")
    lines += [
        "",
        "➡️  Next:",
        '   • more epochs: raise EPOCHS, set RESUME = "latest" in Cell 3, run all cells',
        "   • after a disconnect: run Cells 1-13, then 33-35 to get the trained model back",
        "   • use the weights elsewhere: model.safetensors + model.config.json (GPTConfig.from_dict)",
    ]
    return lines
