"""The training loop: epochs of deterministic batches, validation, checkpoints, exact resume.

Every checkpoint (each epoch end, and every ``save_every_steps`` steps) goes through
the checkpoint engine and carries everything a resume needs: optimizer, scheduler,
scaler, random generators, the data position and the per-step loss history. A run
resumed from any of them on the CPU ends bit-for-bit where the uninterrupted run
ends (docs/resume.md; tests/training/test_resume_exact.py).

A failed save (disk full, Drive disconnected) does not end the run by default:
a warning names the error and the fix, the run continues, and ``TrainingRun.save_failures``
lists it; ``TrainConfig.stop_on_save_error=True`` stops instead.

This module runs the steps and epochs; ``loop_session`` prepares a run before its first step
and ``loop_saves`` writes, records and reports its checkpoints.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import torch

from utils.data.batches import Batch, EpochBatches
from utils.training import progress as _progress
from utils.training.analysis.epoch_change import EpochStart
from utils.training.background import LoopSaves
from utils.training.distributed.context import SINGLE_PROCESS, DistributedContext
from utils.training.loop_saves import poll_saves, save_step, settle_saves
from utils.training.loop_session import Position, Session, last_epoch_to_run, open_session
from utils.training.resume import ResumeState
from utils.training.settings import TrainConfig, TrainingRun

__all__ = ["TrainConfig", "TrainingRun", "train", "evaluate"]


def evaluate(
    model: torch.nn.Module,
    batches: list[Batch],
    *,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """Mean loss per token over ``batches``; uses no randomness and restores the model's mode.

    Raises:
        ValueError: ``batches`` is empty.
    """
    if not batches:
        raise ValueError("evaluate() needs at least one validation batch")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for x, y in batches:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    _, loss = model(x.to(device), y.to(device))
                total += float(loss) * y.numel()
                count += y.numel()
    finally:
        model.train(was_training)
    return total / count


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    train_batches: EpochBatches,
    val_batches: list[Batch],
    config: TrainConfig,
    checkpoint_dir: str | Path,
    *,
    scaler: torch.amp.GradScaler | None = None,
    resume_state: ResumeState | None = None,
    progress: bool = True,
    model_config: Any = None,
    distributed: DistributedContext | None = None,
) -> TrainingRun:
    """Train for ``config.epochs`` epochs (continuing ``resume_state`` when given).

    Args:
        model, optimizer, scheduler: built by the caller; the scheduler steps once per optimizer step.
        train_batches: the training data; its batch size must equal ``config.batch_size``.
        val_batches: fixed validation batches, evaluated at each epoch end.
        config: the settings; stored in every checkpoint.
        checkpoint_dir: where checkpoints go (created when missing).
        scaler: a GradScaler for fp16; created here when fp16 is used and none is given.
        resume_state: from :func:`utils.training.resume.restore_training_state`.
        progress: show a progress bar (plain text, readable in Colab, Jupyter and logs).
        model_config: the config stored to rebuild the model; defaults to ``model.config``.
        distributed: under torchrun, this process's context (utils.training.distributed): losses are
            averaged over the ranks and checkpoints saved by the strategy's rule. None: one process.

    Returns:
        The run's history, per-step losses, checkpoints and best checkpoint.

    Raises:
        ValueError: inconsistent settings (batch size, empty validation set, device).
        CheckpointSaveError: the checkpoint folder cannot be created; or a save failed
            with ``stop_on_save_error=True`` is reported in the result, not raised.
    """
    session = open_session(
        model, optimizer, scheduler, train_batches, val_batches, config, checkpoint_dir,
        scaler=scaler, resume=resume_state, progress=progress, model_config=model_config,
    )  # fmt: skip
    session.distributed = distributed or SINGLE_PROCESS
    if session.distributed.has_group and (config.async_save or config.mirror_dir):
        raise ValueError(
            "async_save and mirror_dir are for one process: with several processes every rank takes part in "
            "each save. Leave out --async-save and --mirror-dir (TrainConfig async_save=False, mirror_dir=None)."
        )
    # A resume continues the run it resumes (its files stay subject to retention); a new run gets
    # a new id, the same on every rank.
    session.run_id = (resume_state.run_id if resume_state else None) or session.distributed.broadcast(
        uuid.uuid4().hex
    )
    session.saves = LoopSaves.open(config, session.checkpoint_dir)
    state = Position.start(resume_state, train_batches)
    run = session.run
    run.resumed_from = resume_state.checkpoint_path if resume_state else None
    run.epochs_completed = state.epoch  # a resumed run starts with the epochs done before it
    last_epoch = last_epoch_to_run(config, state.epoch)
    started = time.perf_counter()
    try:
        for epoch in range(state.epoch, last_epoch):
            _run_epoch(session, state, val_batches, epoch)
            if run.stop_reason:
                break
    except KeyboardInterrupt:  # _finish below still waits for a save in flight: it is never lost
        run.interrupted = True
        run.stop_reason = f"interrupted by the user at step {state.global_step}"
    run.elapsed_s = time.perf_counter() - started
    _finish(session, state)
    return run


def _run_epoch(session: Session, state: Position, val_batches: list[Batch], epoch: int) -> None:
    first = state.batch_in_epoch if epoch == state.epoch else 0
    epoch_start = max(0, len(state.step_losses) - first)  # this epoch's losses from before a resume
    bar = _progress.progress_bar(
        session.batches.batches_per_epoch,
        first,
        f"Epoch {epoch + 1}/{session.config.epochs}",
        session.progress,
    )
    saved_mid_epoch: list[Path] = []
    learning_rate = session.optimizer.param_groups[0]["lr"]
    start_weights = _epoch_start_weights(session, state, epoch, first)
    for index in range(first, session.batches.batches_per_epoch):
        loss, learning_rate = _train_step(session, *session.batches.batch(epoch, index))
        loss = session.distributed.average(loss)
        state.step_losses.append(loss)
        state.global_step += 1
        if bar is not None:
            bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            bar.update(1)
        poll_saves(session, bar)
        if session.run.stop_reason:  # a background save failed, with stop_on_save_error
            break
        if session.config.mid_epoch_save_due(state.global_step, index + 1, session.batches.batches_per_epoch):
            metrics = _metrics(state.step_losses[epoch_start:], None, learning_rate)
            saved_mid_epoch.append(save_step(session, state, epoch, index + 1, metrics, bar))
            if session.run.stop_reason:
                break
    if bar is not None:
        bar.close()
    line = _progress.mid_epoch_saves_line(
        [path for path in saved_mid_epoch if path is not None and path not in session.failed_saves]
    )
    if line:
        _progress.write(line)
    if not session.run.stop_reason:
        metrics = _metrics(state.step_losses[epoch_start:], None, learning_rate)
        _end_epoch(session, state, val_batches, epoch, metrics, start_weights)


def _epoch_start_weights(session: Session, state: Position, epoch: int, first: int) -> EpochStart:
    """The weights this epoch started from, in host memory, for the history's per-tensor change.

    A run resumed mid-epoch reads them from the previous epoch's end checkpoint (searched in the
    checkpoint folder and the resume file's folder); see ``analysis.epoch_change``.
    """
    folders = [session.checkpoint_dir]
    if session.run.resumed_from is not None:
        folders.append(Path(session.run.resumed_from).parent)
    return EpochStart.for_epoch(
        session.model,
        epoch=epoch,
        first_batch=first,
        global_step=state.global_step,
        history=state.history,
        folders=folders,
    )


def _end_epoch(
    session: Session, state: Position, val_batches: list[Batch], epoch: int, metrics, start: EpochStart
) -> None:
    """Validate, record the epoch (metrics and weight changes) in the history, save, print one line."""
    metrics["val_loss"] = session.distributed.average(
        evaluate(session.model, val_batches, device=session.device, amp_dtype=session.amp_dtype)
    )
    changes = start.row_fields(session.model)
    state.history.append({"epoch": epoch, "global_step": state.global_step, **metrics, **changes})
    path = save_step(session, state, epoch, session.batches.batches_per_epoch, metrics, None)
    session.run.epochs_completed = epoch + 1
    background = session.saves is not None and session.saves.background
    _progress.write(
        _progress.epoch_line(epoch, session.config.epochs, state.global_step, metrics, path, background)
    )


def _train_step(session: Session, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """One optimizer step; returns the loss and the learning rate the step used."""
    model, optimizer, scaler, device = session.model, session.optimizer, session.scaler, session.device
    learning_rate = optimizer.param_groups[0]["lr"]
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=session.amp_dtype, enabled=session.amp_dtype is not None):
        _, loss = model(x.to(device), y.to(device))
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    else:
        loss.backward()
    if session.config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), session.config.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if session.scheduler is not None:
        session.scheduler.step()
    return float(loss.detach()), float(learning_rate)


def _metrics(epoch_losses: list[float], val_loss: float | None, learning_rate: float) -> dict[str, Any]:
    train_loss = sum(epoch_losses) / len(epoch_losses) if epoch_losses else None
    return {"train_loss": train_loss, "val_loss": val_loss, "learning_rate": learning_rate}


def _finish(session: Session, state: Position) -> None:
    settle_saves(session)
    run = session.run
    run.history, run.step_losses, run.global_step = state.history, state.step_losses, state.global_step
    run.best_val_loss = state.best_val_loss
    run.best_checkpoint = _best_written(session)
    if run.stop_reason:
        print(f"⏹  Training stopped: {run.stop_reason}. Resume with RESUME='latest'.")
    if run.save_failures:
        print(f"⚠️  {len(run.save_failures)} checkpoint save(s) failed; see the warnings above.")


def _best_written(session: Session) -> Path | None:
    """The lowest-val_loss checkpoint this run wrote that still exists (retention may have removed some).

    Not the folder's best: that may be another run's file, with a loss this run never reached.
    """
    kept = [
        (val_loss, -order, path)
        for order, (path, val_loss) in enumerate(session.written_val_losses.items())
        if val_loss is not None and path.exists()
    ]
    return min(kept)[2] if kept else None  # ties: the newest, as in the checkpoint listing
