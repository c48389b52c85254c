"""The training loop's checkpoint saves: write one (or start it in the background), record it, report failures.

A save captures the state of its step at once (``functools.partial`` evaluates every argument);
with ``async_save`` the write runs in the background (``background.LoopSaves``) and its outcome
is recorded after a later step. A failure is reported with its fix and stops the run only with
``stop_on_save_error``. ``settle_saves`` waits at the end of the run for the save in flight and
for the mirror, so no save is ever left silently pending.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from utils.data.batches import EpochBatches
from utils.training import progress as _progress
from utils.training.background import SaveOutcome
from utils.training.engine.checkpoint import RetentionPolicy, save_checkpoint
from utils.training.engine.errors import CheckpointSaveError
from utils.training.loop_session import Position, Session
from utils.training.rng import capture_rng_state


def save_step(
    session: Session, state: Position, epoch: int, batch_in_epoch: int, metrics, bar
) -> Path | None:
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


def _save_in_background(session: Session, save, where: str, metrics, bar) -> Path | None:
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


def _save_done(session: Session, path: Path, metrics) -> None:
    session.run.checkpoints.append(path)
    session.written_val_losses[path] = metrics.get("val_loss")


def _save_failed(session: Session, where: str, error: BaseException, bar) -> None:
    config = session.config
    session.run.save_failures.append(f"{where}: {error}")
    _progress.write(_progress.save_failure_message(where, error, config.stop_on_save_error), bar)
    if config.stop_on_save_error:
        session.run.stop_reason = f"checkpoint save failed at {where}"


def _record_saves(session: Session, outcomes: list[SaveOutcome], bar) -> None:
    """What finished in the background: a written file joins the run, a failure is reported now."""
    for outcome in outcomes:
        if outcome.error is None:
            _save_done(session, outcome.path, outcome.metrics)
        else:
            session.failed_saves.add(outcome.path)
            _save_failed(session, outcome.where, outcome.error, bar)


def poll_saves(session: Session, bar) -> None:
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


def settle_saves(session: Session) -> None:
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
