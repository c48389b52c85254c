"""Restore everything of a run but its weights and optimizer: counters, histories, scheduler, scaler, generators.

Every part is type-checked first (:func:`check_parts`), before anything is changed; a part the
file lacks is listed in ``ResumeState.missing`` with what will differ, never skipped silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from utils.training.engine import format as fmt
from utils.training.engine.errors import ResumeError
from utils.training.engine.record import KINDS
from utils.training.resume_report import ResumeState
from utils.training.rng import restore_rng_state


def restore_run_parts(
    path: Path, obj: dict[str, Any], state: ResumeState, optimizer: Any, scheduler: Any, scaler: Any
) -> None:
    """Everything but the weights and the optimizer: counters, histories, scheduler, scaler, generators.

    ``restore_training_state`` calls it; so does the sharded (FSDP) resume under torchrun, which
    restores the weights and optimizer through torch.distributed.checkpoint instead.

    Args:
        path: the checkpoint (named in errors).
        obj: its training state in the single-file format (weights and optimizer may be absent).
        state: filled in: position, histories, what was restored and what is missing.
        optimizer: the (restored) optimizer, for a scheduler the checkpoint lacks.

    Raises:
        ResumeError: a part is malformed or does not fit.
    """
    check_parts(path, obj)
    _restore_counters(obj, state)
    _restore_scheduler(obj, scheduler, optimizer, state)
    _restore_scaler(obj, scaler, state)
    _restore_generators(path, obj, state)
    state.training_config = (obj.get(fmt.CONFIG_KEY) or {}).get("training")


def _restore_generators(path: Path, obj: dict[str, Any], state: ResumeState) -> None:
    try:
        rng = restore_rng_state(obj.get(fmt.RNG_STATE_KEY))
    except ResumeError as error:  # the RNG module does not know the file: name it
        raise ResumeError(path, error.problem, expected=error.expected, fix=error.fix) from error
    state.restored += [f"random generators ({', '.join(rng.restored)})"] if rng.restored else []
    state.missing += rng.missing


# The type each part must have when present; checked before the model or optimizer is touched.
_PART_TYPES = {
    fmt.EPOCH_KEY: (int, float),
    fmt.GLOBAL_STEP_KEY: (int, float),
    fmt.OPTIMIZER_STATE_KEY: dict,
    fmt.SCHEDULER_STATE_KEY: dict,
    fmt.SCALER_STATE_KEY: dict,
    fmt.HISTORY_KEY: list,
    fmt.DATA_STATE_KEY: dict,
    fmt.STEP_LOSSES_KEY: torch.Tensor,
    fmt.RNG_STATE_KEY: dict,
    fmt.CONFIG_KEY: dict,
}
_DATA_STATE_FIELDS = ("epoch", "batch_in_epoch", "batches_per_epoch")


def check_parts(path: Path, obj: dict[str, Any]) -> None:
    """Raise ResumeError naming every part of the file that is not what save_checkpoint writes."""
    problems = [
        f"{key!r} is a {type(obj[key]).__name__}"
        for key, kind in _PART_TYPES.items()
        if obj.get(key) is not None and (not isinstance(obj[key], kind) or _not_finite(obj[key]))
    ]
    data, history = obj.get(fmt.DATA_STATE_KEY), obj.get(fmt.HISTORY_KEY)
    losses, config = obj.get(fmt.STEP_LOSSES_KEY), obj.get(fmt.CONFIG_KEY)
    if isinstance(data, dict):
        problems += [
            f"data_state[{f!r}] is not an integer" for f in _DATA_STATE_FIELDS if type(data.get(f)) is not int
        ]
    if isinstance(history, list) and not all(isinstance(row, dict) for row in history):
        problems.append("'history' holds entries that are not dicts")
    if isinstance(losses, torch.Tensor) and (losses.dim() != 1 or losses.is_complex()):
        problems.append(f"'step_losses' has shape {list(losses.shape)}, expected one loss per step")
    if isinstance(config, dict) and not isinstance(config.get("training") or {}, dict):
        problems.append("config['training'] is not a dict")
    if problems:
        raise ResumeError(
            path, "the file's training state is malformed: " + "; ".join(problems[:4]),
            expected="a checkpoint written by save_checkpoint",
            fix="resume from another checkpoint, start a new run, or load only its weights (load_model_weights)",
        )  # fmt: skip


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _restore_counters(obj: dict[str, Any], state: ResumeState) -> None:
    epoch, step = int(obj.get(fmt.EPOCH_KEY) or 0), int(obj.get(fmt.GLOBAL_STEP_KEY) or 0)  # None: unknown
    state.global_step = step
    data = obj.get(fmt.DATA_STATE_KEY)
    if data is not None:
        state.data_state = dict(data)
        done, per_epoch = int(data["batch_in_epoch"]), int(data["batches_per_epoch"])
        state.epoch, state.batch_in_epoch = (
            (int(data["epoch"]) + 1, 0) if done >= per_epoch else (int(data["epoch"]), done)
        )
        state.restored.append(f"data position (epoch {state.epoch + 1}, batch {state.batch_in_epoch + 1})")
    else:
        state.epoch = epoch + 1
        state.missing.append(
            f"data position: not in the file; assuming it was written at the end of epoch {epoch + 1}, "
            f"so training continues at the start of epoch {epoch + 2}"
        )
    state.history = [dict(row) for row in obj.get(fmt.HISTORY_KEY) or []]
    if state.history:
        state.restored.append(f"metric history ({len(state.history)} epochs)")
    else:
        state.missing.append("metric history: not in the file; the history starts at this checkpoint")
    losses = obj.get(fmt.STEP_LOSSES_KEY)
    if losses is not None:
        state.step_losses = [float(v) for v in losses.tolist()]
        state.restored.append(f"per-step losses ({len(state.step_losses)} steps)")
    else:
        state.missing.append(
            "per-step losses: not in the file; the step-loss curve starts at this checkpoint"
        )


def _restore_scheduler(obj: dict[str, Any], scheduler: Any, optimizer: Any, state: ResumeState) -> None:
    saved = obj.get(fmt.SCHEDULER_STATE_KEY)
    if scheduler is None:
        if saved is not None:
            state.notes.append("the file has an LR-scheduler state but no scheduler was given; not restored")
        return
    if saved is not None:
        try:
            scheduler.load_state_dict(saved)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ResumeError(
                state.checkpoint_path, f"the LR-scheduler state does not fit this scheduler ({error!r})",
                fix="build the scheduler with build_scheduler(...) as in the original run, or resume "
                "from another checkpoint",
            ) from error  # fmt: skip
        state.restored.append("LR scheduler")
        return
    if _fast_forward(scheduler, optimizer, state.global_step):
        state.missing.append(
            f"LR scheduler: not in the file; set to step {state.global_step} of the current schedule "
            "(matches the original run only if the schedule settings are unchanged)"
        )
    else:
        state.missing.append("LR scheduler: not in the file; the schedule restarts from its first step")


def _fast_forward(scheduler: Any, optimizer: Any, step: int) -> bool:
    """Move a LambdaLR to ``step`` without calling step() ``step`` times."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None or optimizer is None:
        return False
    scheduler.last_epoch = step
    rates = [base * fn(step) for base, fn in zip(scheduler.base_lrs, lambdas, strict=True)]
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates
    return True


def _restore_scaler(obj: dict[str, Any], scaler: Any, state: ResumeState) -> None:
    saved = obj.get(fmt.SCALER_STATE_KEY)
    if saved is not None and scaler is not None:
        try:
            scaler.load_state_dict(saved)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            raise ResumeError(
                state.checkpoint_path, f"the grad-scaler state does not fit ({error!r})",
                fix="resume from another checkpoint, or set MIXED_PRECISION as in the original run",
            ) from error  # fmt: skip
        state.restored.append("grad scaler (fp16 loss scale)")
    elif saved is not None:
        state.scaler_state = dict(saved)
        state.notes.append("grad-scaler state kept; train() applies it when it runs in fp16")
    elif scaler is not None and scaler.is_enabled():
        state.missing.append(
            "grad scaler: not in the file; the fp16 loss scale restarts (a few steps may be skipped)"
        )


def describe_weights_only(state: ResumeState, record, scheduler: Any, scaler: Any) -> None:
    """What a resume from a weights-only source (a bare state_dict, another tool's file) lacks."""
    if record.kind != "bare":
        counters = (
            f"epoch {record.epoch}, step {record.global_step}" if record.global_step is not None else ""
        )
        state.notes.append(
            f"{KINDS.get(record.kind, record.kind)}: only its weights are used"
            + (f" (it was saved at {counters}; this run counts from 0)" if counters else "")
        )
    state.missing += [
        "counters (epoch, step) and data position: a weights-only file; training starts at epoch 1, step 0",
        "metric history and per-step losses: not in the file",
        "random generators: not in the file; dropout and data order follow the current seed",
    ]
    if scheduler is not None:
        state.missing.append(
            "LR scheduler: not in the file; the schedule starts from its first step (warmup)"
        )
    if scaler is not None and scaler.is_enabled():
        state.missing.append("grad scaler: not in the file; the fp16 loss scale restarts")
