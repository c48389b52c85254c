"""The training loop: epochs of deterministic batches, validation, checkpoints, exact resume.

Every checkpoint (each epoch end, and every ``save_every_steps`` steps) goes through
the checkpoint engine and carries everything a resume needs: optimizer, scheduler,
scaler, random generators, the data position and the per-step loss history. A run
resumed from any of them on the CPU ends bit-for-bit where the uninterrupted run
ends (docs/resume.md; tests/training/test_resume_exact.py).

A failed save (disk full, Drive disconnected) does not end the run by default:
a warning names the error and the fix, the run continues, and ``TrainingRun.save_failures``
lists it; ``TrainConfig.stop_on_save_error=True`` stops instead.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from utils.data.batches import Batch, EpochBatches
from utils.training import progress as _progress
from utils.training.analysis.epoch_change import EpochStart
from utils.training.background import LoopSaves, SaveOutcome
from utils.training.distributed.context import SINGLE_PROCESS, DistributedContext
from utils.training.engine.checkpoint import RetentionPolicy, save_checkpoint
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.prefixes import unwrap_model
from utils.training.engine.state_dict_diff import model_config_dict
from utils.training.precision import build_grad_scaler, resolve_device, resolve_precision
from utils.training.resume import ResumeState, describe_changes
from utils.training.rng import capture_rng_state
from utils.training.settings import TrainConfig, TrainingRun

__all__ = ["TrainConfig", "TrainingRun", "train", "evaluate"]


@dataclass
class _Session:
    """Everything one call of train() works with (keeps the helpers' signatures short)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    amp_dtype: torch.dtype | None
    device: torch.device
    config: TrainConfig
    checkpoint_dir: Path
    batches: EpochBatches
    stored_config: dict[str, Any]
    run: TrainingRun
    progress: bool
    written_val_losses: dict[Path, float | None] = field(default_factory=dict)  # this run's files
    distributed: DistributedContext = SINGLE_PROCESS  # which rank this is; how it averages and saves
    run_id: str | None = None  # stored in every checkpoint; retention prunes this run's files only
    saves: LoopSaves | None = None  # background saves and the mirror (set by train())
    failed_saves: set[Path] = field(default_factory=set)  # background saves that failed after they started


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
    session = _open_session(
        model, optimizer, scheduler, train_batches, val_batches, config, checkpoint_dir,
        scaler=scaler, resume=resume_state, progress=progress, model_config=model_config,
    )  # fmt: skip
    session.distributed = distributed or SINGLE_PROCESS
    # A resume continues the run it resumes (its files stay subject to retention); a new run gets
    # a new id, the same on every rank.
    session.run_id = (resume_state.run_id if resume_state else None) or session.distributed.broadcast(
        uuid.uuid4().hex
    )
    if session.distributed.has_group and (config.async_save or config.mirror_dir):
        raise ValueError(
            "async_save and mirror_dir are for one process: with several processes every rank takes part in "
            "each save. Leave out --async-save and --mirror-dir (TrainConfig async_save=False, mirror_dir=None)."
        )
    session.saves = LoopSaves.open(config, session.checkpoint_dir)
    state = _Position.start(resume_state, train_batches)
    run = session.run
    run.resumed_from = resume_state.checkpoint_path if resume_state else None
    run.epochs_completed = state.epoch  # a resumed run starts with the epochs done before it
    last_epoch = _last_epoch(config, state.epoch)
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


def _open_session(
    model, optimizer, scheduler, batches, val_batches, config, checkpoint_dir, *, scaler, resume, progress,
    model_config,
):  # fmt: skip
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if batches.batch_size != config.batch_size:
        raise ValueError(
            f"train_batches uses batch_size={batches.batch_size} but config.batch_size={config.batch_size}; "
            "build both from the same setting"
        )
    if not val_batches:
        raise ValueError("val_batches is empty: training needs at least one validation batch")
    device = resolve_device(config.device)
    _move_to(model, optimizer, device)
    amp_dtype = resolve_precision(config.mixed_precision, device)
    if scaler is None and amp_dtype is torch.float16:
        scaler = build_grad_scaler(config.mixed_precision, device)
        if resume is not None and resume.scaler_state is not None:
            scaler.load_state_dict(resume.scaler_state)
    folder = _prepare_folder(checkpoint_dir)
    for line in describe_changes(resume, config, batches, scheduler) if resume else []:
        print(f"⚠️  {line}")
    run = TrainingRun(history=[], step_losses=[])
    stored = {"training": asdict(config), "model": _model_config_dict(model, model_config)}
    return _Session(
        model, optimizer, scheduler, scaler, amp_dtype, device, config, folder, batches, stored, run, progress
    )


def _prepare_folder(checkpoint_dir: str | Path) -> Path:
    """Create the folder now, so a bad path fails before any training time is spent."""
    folder = Path(checkpoint_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointSaveError(
            folder,
            f"cannot create the checkpoint folder ({type(error).__name__}: {error})",
            fix="set CHECKPOINT_DIR to a writable folder (on Colab, mount Google Drive first)",
        ) from error
    return folder


def _move_to(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move the model, and any optimizer state already loaded, to ``device``."""
    model.to(device)
    for state in optimizer.state.values():
        for key, value in state.items():
            # AdamW keeps its "step" counter on the CPU unless it is capturable/fused.
            if isinstance(value, torch.Tensor) and (key != "step" or value.dim() > 0):
                state[key] = value.to(device)


def _model_config_dict(model: torch.nn.Module, model_config: Any) -> dict[str, Any]:
    """The model config stored in checkpoints; {} for a model without one (Cell 34 then cannot rebuild it)."""
    if model_config is None:
        return model_config_dict(unwrap_model(model)) or {}
    converted = model_config_dict(SimpleNamespace(config=model_config))  # the engine's one conversion rule
    if converted is None:
        raise TypeError(
            f"model_config must be a GPTConfig, a dataclass or a mapping, got {type(model_config).__name__}"
        )
    return converted


def _last_epoch(config: TrainConfig, first_epoch: int) -> int:
    if first_epoch >= config.epochs:
        print(
            f"Nothing to train: the checkpoint already completed {first_epoch} epoch(s) and EPOCHS="
            f"{config.epochs}. Raise EPOCHS to train further."
        )
    return config.last_epoch(first_epoch)


@dataclass
class _Position:
    """Where the run is: counters and the histories that checkpoints carry."""

    epoch: int
    batch_in_epoch: int
    global_step: int
    history: list[dict[str, Any]]
    step_losses: list[float]

    @classmethod
    def start(cls, resume: ResumeState | None, batches: EpochBatches) -> _Position:
        if resume is None:
            return cls(0, 0, 0, [], [])
        batch = min(resume.batch_in_epoch, batches.batches_per_epoch)
        return cls(resume.epoch, batch, resume.global_step, list(resume.history), list(resume.step_losses))

    @property
    def best_val_loss(self) -> float | None:
        losses = [row["val_loss"] for row in self.history if row.get("val_loss") is not None]
        return min(losses) if losses else None


def _run_epoch(session: _Session, state: _Position, val_batches: list[Batch], epoch: int) -> None:
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
        _poll_saves(session, bar)
        if session.run.stop_reason:  # a background save failed, with stop_on_save_error
            break
        if session.config.mid_epoch_save_due(state.global_step, index + 1, session.batches.batches_per_epoch):
            metrics = _metrics(state.step_losses[epoch_start:], None, learning_rate)
            saved_mid_epoch.append(_save(session, state, epoch, index + 1, metrics, bar))
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


def _epoch_start_weights(session: _Session, state: _Position, epoch: int, first: int) -> EpochStart:
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
    session: _Session, state: _Position, val_batches: list[Batch], epoch: int, metrics, start: EpochStart
) -> None:
    """Validate, record the epoch (metrics and weight changes) in the history, save, print one line."""
    metrics["val_loss"] = session.distributed.average(
        evaluate(session.model, val_batches, device=session.device, amp_dtype=session.amp_dtype)
    )
    changes = start.row_fields(session.model)
    state.history.append({"epoch": epoch, "global_step": state.global_step, **metrics, **changes})
    path = _save(session, state, epoch, session.batches.batches_per_epoch, metrics, None)
    session.run.epochs_completed = epoch + 1
    background = session.saves is not None and session.saves.background
    _progress.write(
        _progress.epoch_line(epoch, session.config.epochs, state.global_step, metrics, path, background)
    )


def _train_step(session: _Session, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
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


def _save(session: _Session, state: _Position, epoch: int, batch_in_epoch: int, metrics, bar) -> Path | None:
    """Write a checkpoint (or start writing it in the background); a failure is reported
    (and stops the run only when configured to)."""
    config = session.config
    where = f"epoch {epoch + 1}, step {state.global_step}"
    save = functools.partial(  # every argument is evaluated now: the state of this step
        save_checkpoint if not session.distributed.has_group else session.distributed.save_checkpoint,
        session.checkpoint_dir,
        session.model,
        session.optimizer,
        epoch=epoch,
        global_step=state.global_step,
        metrics=metrics,
        scheduler=session.scheduler,
        scaler=session.scaler,
        history=state.history,
        config=session.stored_config,
        rng_state=capture_rng_state(),
        data_state=session.distributed.describe_data(_data_state(session.batches, epoch, batch_in_epoch)),
        step_losses=torch.tensor(state.step_losses, dtype=torch.float64),
        retention=RetentionPolicy(keep_best=config.keep_best, keep_last=config.keep_last),
        run_id=session.run_id,
    )
    if session.saves is not None and session.saves.background:
        return _save_in_background(session, save, where, metrics, bar)
    try:
        path = save()
    except CheckpointSaveError as error:
        _save_failed(session, where, error, bar)
        return None
    _save_done(session, path, metrics)
    if session.saves is not None and session.saves.mirror is not None:
        session.saves.mirror.enqueue(path)  # a background writer does this itself once the file is complete
    return path


def _save_in_background(session: _Session, save, where: str, metrics, bar) -> Path | None:
    """Wait for the previous background save (say so when it had to), record it, start this one."""
    saves = session.saves
    previous = saves.in_flight_name
    outcomes, waited = saves.wait_for_previous()
    session.run.save_wait_s = saves.waited_s
    if waited > 0:
        _progress.write(_progress.save_wait_line(waited, previous), bar)
    _record_saves(session, outcomes, bar)
    if session.run.stop_reason:  # the previous save failed with stop_on_save_error: no new one
        return None
    try:
        return saves.start(lambda writer: save(blocking=False, writer=writer), where, metrics)
    except CheckpointSaveError as error:  # the state could not be copied to host memory
        _save_failed(session, where, error, bar)
        return None


def _save_done(session: _Session, path: Path, metrics) -> None:
    session.run.checkpoints.append(path)
    session.written_val_losses[path] = metrics.get("val_loss")


def _save_failed(session: _Session, where: str, error: BaseException, bar) -> None:
    config = session.config
    session.run.save_failures.append(f"{where}: {error}")
    _progress.write(_progress.save_failure_message(where, error, config.stop_on_save_error), bar)
    if config.stop_on_save_error:
        session.run.stop_reason = f"checkpoint save failed at {where}"


def _record_saves(session: _Session, outcomes: list[SaveOutcome], bar) -> None:
    """What finished in the background: a written file joins the run, a failure is reported now."""
    for outcome in outcomes:
        if outcome.error is None:
            _save_done(session, outcome.path, outcome.metrics)
        else:
            session.failed_saves.add(outcome.path)
            _save_failed(session, outcome.where, outcome.error, bar)


def _poll_saves(session: _Session, bar) -> None:
    """After each step: record a background save that finished, report mirror failures, show the mirror."""
    saves = session.saves
    if saves is None:
        return
    _record_saves(session, saves.finished(), bar)
    for failure in saves.mirror_failures():
        _progress.write(
            _progress.mirror_failure_message(failure.name, saves.mirror.folder, failure.reason), bar
        )
    status = saves.mirror_status()
    if bar is not None and status is not None and (status.failures or not status.up_to_date):
        bar.set_postfix_str(f"{bar.postfix} | {status.short()}", refresh=False)


def _data_state(batches: EpochBatches, epoch: int, batch_in_epoch: int) -> dict[str, int]:
    return {
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,  # batches of `epoch` already trained on
        "batches_per_epoch": batches.batches_per_epoch,
        "seed": batches.seed,
    }


def _finish(session: _Session, state: _Position) -> None:
    _settle_saves(session)
    run = session.run
    run.history, run.step_losses, run.global_step = state.history, state.step_losses, state.global_step
    run.best_val_loss = state.best_val_loss
    run.best_checkpoint = _best_written(session)
    if run.stop_reason:
        print(f"⏹  Training stopped: {run.stop_reason}. Resume with RESUME='latest'.")
    if run.save_failures:
        print(f"⚠️  {len(run.save_failures)} checkpoint save(s) failed; see the warnings above.")


def _settle_saves(session: _Session) -> None:
    """Wait for the background save in flight and for the mirror; report what they did.

    The run never ends with a save silently pending. A second interrupt stops the waiting,
    not the writing: the threads finish on their own (and Cell 33 waits for them).
    """
    saves, run = session.saves, session.run
    if saves is None:
        return
    try:
        if saves.background and saves.in_flight_name:
            print(f"⏳ Waiting for the last checkpoint ({saves.in_flight_name}) to be written ...")
        _record_saves(session, saves.wait_for_all(), None)
        if saves.mirror is not None:
            saves.mirror.retry_failed()  # once: a copy that failed mid-run may succeed now
            status = saves.mirror.status()
            if not status.up_to_date:
                print(f"⏳ Waiting for the mirror to copy {status.behind} file(s) to {status.folder} ...")
            saves.mirror.wait()
    except KeyboardInterrupt:
        run.interrupted = True
        print(
            "⚠️  Stopped waiting: a checkpoint or a mirror copy is still being written in the background. "
            "It completes on its own; Cells 33-34 wait for it."
        )
    run.save_wait_s = saves.waited_s
    for failure in saves.mirror_failures():
        print(_progress.mirror_failure_message(failure.name, saves.mirror.folder, failure.reason))
    run.mirror = saves.mirror_status()
    if run.mirror is not None:
        print("\n".join(run.mirror.lines()))
    saves.close()


def _best_written(session: _Session) -> Path | None:
    """The lowest-val_loss checkpoint this run wrote that still exists (retention may have removed some).

    Not the folder's best: that may be another run's file, with a loss this run never reached.
    """
    kept = [
        (val_loss, -order, path)
        for order, (path, val_loss) in enumerate(session.written_val_losses.items())
        if val_loss is not None and path.exists()
    ]
    return min(kept)[2] if kept else None  # ties: the newest, as in the checkpoint listing
