"""Resume training from a checkpoint: choose the file, restore every piece of state, say what is missing.

``restore_training_state`` loads with ``weights_only=True`` on the CPU and restores, in
order, the model, optimizer, LR scheduler, grad scaler, random generators, data position,
counters and histories. Whatever the file lacks (a weights-only file, an older checkpoint
without RNG or data state, a state_dict from another tool) is listed in the returned
:class:`ResumeState` with what will differ; nothing is skipped silently.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.training.engine import format as fmt
from utils.training.engine.copying import copy_verified
from utils.training.engine.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NoCheckpointsError,
    ResumeError,
)
from utils.training.engine.matching import FittedWeights, fit_weights
from utils.training.engine.record import KINDS
from utils.training.engine.sources import open_checkpoint
from utils.training.rng import capture_rng_state, restore_rng_state

__all__ = [
    "ResumeState",
    "resolve_resume_source",
    "restore_training_state",
    "restore_run_parts",
    "render_resume_report",
    "describe_changes",
]

_NO_RESUME = ("", "none")
# Training settings whose change makes a resumed run differ from the uninterrupted one.
_EXACTNESS_SETTINGS = (
    "batch_size",
    "learning_rate",
    "weight_decay",
    "warmup_steps",
    "min_lr_ratio",
    "grad_clip",
    "max_batches_per_epoch",
    "seed",
    "mixed_precision",
)


@dataclass
class ResumeState:
    """Where a resumed run continues, and what could and could not be restored.

    ``epoch``/``batch_in_epoch``: the next batch to train is ``batch_in_epoch`` of ``epoch``
    (0-based); an epoch-end checkpoint continues at batch 0 of the next epoch.
    """

    checkpoint_path: Path
    kind: str
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_state: dict[str, Any] | None = None
    training_config: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None  # kept when no scaler was given to restore into
    run_id: str | None = None  # the resumed run's id: its checkpoints stay under one retention

    @property
    def exact(self) -> bool:
        """True when nothing is missing: the run continues as if it had never stopped."""
        return not self.missing

    def render(self) -> str:
        return render_resume_report(self)


def resolve_resume_source(resume: str | os.PathLike | None, checkpoint_dir: str | os.PathLike) -> Path | None:
    """Turn the notebook's RESUME setting into a checkpoint file (or None: start fresh).

    Args:
        resume: ``"none"`` (or None / ""), ``"latest"`` (highest step in ``checkpoint_dir``),
            or a path; a bare file name is also looked up inside ``checkpoint_dir``.
        checkpoint_dir: the run's checkpoint folder.

    Raises:
        NoCheckpointsError: ``"latest"`` but the folder holds no valid checkpoint.
        CheckpointNotFoundError: the path does not exist.
        ResumeError: the path is a folder.
    """
    if resume is None or str(resume).strip().lower() in _NO_RESUME:
        return None
    folder = Path(checkpoint_dir).expanduser()
    if str(resume).strip().lower() == "latest":
        return _latest(folder)
    path = Path(resume).expanduser()
    if not path.exists() and not path.is_absolute() and (folder / path).exists():
        path = folder / path
    if path.is_dir() and not _is_checkpoint_folder(path):  # a sharded (FSDP) checkpoint is a folder
        raise ResumeError(
            path, "RESUME names a folder, expected a checkpoint file",
            fix=f"set CHECKPOINT_DIR={str(path)!r} and RESUME='latest', or name one .pt file in it",
        )  # fmt: skip
    if not path.exists():
        raise CheckpointNotFoundError(
            path, "RESUME names a file that does not exist",
            fix="copy a path from the checkpoint listing (Cell 33), or use RESUME='latest' or 'none'",
        )  # fmt: skip
    return path


def _is_checkpoint_folder(path: Path) -> bool:
    """A folder that a source reads as one checkpoint (our sharded folder, a DCP or Hugging Face one)."""
    from utils.training.engine.sources import claiming_source, probe_path

    try:
        with probe_path(path) as probe:
            return claiming_source(probe) is not None
    except CheckpointError:
        return False


def _latest(folder: Path) -> Path:
    from utils.training.engine.recovery import latest_checkpoint

    info = latest_checkpoint(folder)
    if info is None:
        state = "does not exist" if not folder.exists() else "holds no valid checkpoint"
        raise NoCheckpointsError(
            folder,
            f"RESUME='latest' but the checkpoint folder {state}",
            fix="set RESUME='none' to start a new run, or point CHECKPOINT_DIR at the folder holding "
            "your checkpoints (on Colab: mount Google Drive first)",
        )
    return Path(info.path)


def restore_training_state(
    checkpoint_path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any = None,
    scaler: Any = None,
) -> ResumeState:
    """Restore a run from ``checkpoint_path`` into the given objects (built as for a new run).

    Build the model, optimizer and scheduler first (same settings as the original run),
    then call this, then pass the result to ``train(..., resume_state=...)``.

    Returns:
        The resume position, the histories, and the lists of what was restored and missing.

    Raises:
        CheckpointNotFoundError, CorruptCheckpointError, NotACheckpointError,
        UnsafeCheckpointError: the file cannot be read safely.
        ArchitectureMismatchError: the weights do not fit ``model`` (the model is unchanged).
        ResumeError: the optimizer state does not fit ``optimizer``, or the RNG state is malformed.
    """
    path = Path(checkpoint_path).expanduser()
    with open_checkpoint(path) as checkpoint:
        record = checkpoint.record()
        obj = _training_state(checkpoint)
        if obj is not None:
            _check_parts(path, obj)  # a malformed part fails here, before anything is changed
        with checkpoint.weights() as weights:
            state = ResumeState(checkpoint_path=path, kind=record.kind, run_id=record.run_id)
            config = obj.get(fmt.CONFIG_KEY) if obj is not None else record.config
            fitted = fit_weights(path, weights, model, config, max_lines=4, then="then resume")
            _note_fit(fitted, state)
            _check_checksums(path, fitted)  # damage torch.load lets through, refused before any change
            _restore_all(path, obj, record, fitted, (optimizer, scheduler, scaler), state)
    if obj is not None:
        state.training_config = (obj.get(fmt.CONFIG_KEY) or {}).get("training")
    return state


def _training_state(checkpoint) -> dict[str, Any] | None:
    """The file's training state (this notebook's full and legacy files), optimizer state copied
    out of the memory-mapped file so that training never writes into its pages; None for a
    weights-only source (a bare state_dict, another tool's checkpoint)."""
    obj = checkpoint.training_state()
    if obj is None:
        return None
    obj = dict(obj)
    if obj.get(fmt.OPTIMIZER_STATE_KEY) is not None:
        obj[fmt.OPTIMIZER_STATE_KEY] = _materialized(obj[fmt.OPTIMIZER_STATE_KEY])
    return obj


def _note_fit(fitted: FittedWeights, state: ResumeState) -> None:
    if fitted.stripped:
        state.notes.append(f"removed wrapper prefix(es) {''.join(fitted.stripped)!r} from the weight names")
    if fitted.diff.dtype_conversions:
        state.notes.append(f"{len(fitted.diff.dtype_conversions)} tensor(s) converted to the model's dtype")
    state.notes.extend(fitted.weights.notes)


def _check_checksums(path: Path, fitted: FittedWeights) -> None:
    damaged = fitted.weights.damaged([job.name for job in fitted.jobs])
    if damaged:
        raise CorruptCheckpointError(
            path,
            f"is damaged: {len(damaged)} weight tensor(s) fail the file's own CRC-32 checksum "
            f"({', '.join(damaged[:3])}{', ...' if len(damaged) > 3 else ''})",
            expected="weights whose bytes match the checksums stored when the checkpoint was saved",
            fix="resume from another checkpoint (RESUME = a path from the listing); this file cannot be repaired",
        )


def _restore_all(path, obj, record, fitted: FittedWeights, objects: tuple, state: ResumeState) -> None:
    """All or nothing: every part that can still fail is restored first, with a snapshot to roll
    back to; the weights (already checked against the model) are copied last."""
    optimizer, scheduler, scaler = objects
    snapshot = _Snapshot.take(optimizer, scheduler, scaler)
    try:
        _restore_optimizer(path, obj, optimizer, state)
        if obj is None:
            _describe_weights_only(state, record, scheduler, scaler)
        else:
            restore_run_parts(path, obj, state, optimizer, scheduler, scaler)
    except BaseException:
        snapshot.roll_back()
        raise
    copy_verified(fitted.jobs, verify=False)
    state.restored.insert(0, "model weights")


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
    _check_parts(path, obj)
    _restore_counters(obj, state)
    _restore_scheduler(obj, scheduler, optimizer, state)
    _restore_scaler(obj, scaler, state)
    _restore_generators(path, obj, state)
    state.training_config = (obj.get(fmt.CONFIG_KEY) or {}).get("training")


@dataclass
class _Snapshot:
    """The state a failed resume must leave as it found: optimizer, scheduler, scaler, generators.

    ``state_dict()`` of an optimizer refers to its tensors, and ``load_state_dict`` replaces
    them rather than writing into them, so the references stay a faithful snapshot.
    """

    objects: list[tuple[Any, dict[str, Any]]]
    generators: dict[str, Any]

    @classmethod
    def take(cls, *objects: Any) -> _Snapshot:
        kept = [(obj, obj.state_dict()) for obj in objects if obj is not None]
        return cls(kept, capture_rng_state())

    def roll_back(self) -> None:
        for obj, saved in self.objects:
            obj.load_state_dict(saved)
        restore_rng_state(self.generators)


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


def _check_parts(path: Path, obj: dict[str, Any]) -> None:
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


def _materialized(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: _materialized(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_materialized(item) for item in value)
    return value


def _restore_optimizer(path: Path, obj: Any, optimizer: Any, state: ResumeState) -> None:
    saved = obj.get(fmt.OPTIMIZER_STATE_KEY) if obj is not None else None
    if saved is None:
        state.missing.append("optimizer state: not in the file; AdamW's moments restart from zero")
        return
    if optimizer is None:
        state.notes.append("optimizer state present but no optimizer was given; not restored")
        return
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as error:
        raise ResumeError(
            path, f"the optimizer state does not fit this optimizer ({error})",
            fix="build the optimizer with build_optimizer(model, ...) as in the original run",
        ) from error  # fmt: skip
    state.restored.append("optimizer (its learning rate, betas and weight decay included)")


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


def _describe_weights_only(state: ResumeState, record, scheduler: Any, scaler: Any) -> None:
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


def render_resume_report(state: ResumeState) -> str:
    """Readable lines for the training cell: source, position, restored, missing, notes."""
    lines = [
        f"🔁 RESUMING from {state.checkpoint_path.name} ({state.kind} checkpoint)",
        f"   Continues at epoch {state.epoch + 1}, batch {state.batch_in_epoch + 1} (global step {state.global_step})",
        f"   ✅ Restored: {', '.join(state.restored)}",
    ]
    if state.missing:
        lines.append("   ⚠️  Missing from the file (this run will differ from an uninterrupted one):")
        lines += [f"      - {item}" for item in state.missing]
    else:
        lines.append(
            "   ✅ Complete state: the run continues exactly where it stopped (bit-exact on the CPU)."
        )
    lines += [f"   ℹ️  {note}" for note in state.notes]
    return "\n".join(lines)


def describe_changes(state: ResumeState, config: Any, batches: Any, scheduler: Any = None) -> list[str]:
    """Lines naming each current setting that differs from the resumed run's (empty: none).

    Args:
        state: from :func:`restore_training_state`.
        config: the current TrainConfig.
        batches: the current EpochBatches.
        scheduler: the current (restored) scheduler, to compare its planned length.
    """
    lines = []
    saved = state.training_config or {}
    for name in _EXACTNESS_SETTINGS:
        if name in saved and saved[name] != getattr(config, name):
            keep = (
                " (the optimizer keeps the checkpoint's value)"
                if name in ("learning_rate", "weight_decay")
                else ""
            )
            lines.append(
                f"{name} changed since the checkpoint: {saved[name]!r} -> {getattr(config, name)!r}{keep}"
            )
    data = state.data_state or {}
    if data and (data.get("seed"), data.get("batches_per_epoch")) != (
        batches.seed,
        batches.batches_per_epoch,
    ):
        lines.append(
            f"the data differs from the checkpoint's (seed {data.get('seed')} -> {batches.seed}, batches per "
            f"epoch {data.get('batches_per_epoch')} -> {batches.batches_per_epoch}): the batch order will differ"
        )
    world, now = data.get("world_size", 1), getattr(batches, "world_size", 1)
    if data and world != now:
        lines.append(
            f"the checkpoint was written by {world} process(es), this run has {now}: each process reads "
            "another part of every epoch, so the data order per process differs from the original run's"
        )
    planned = getattr((getattr(scheduler, "lr_lambdas", None) or [None])[0], "total_steps", None)
    wanted = config.epochs * batches.batches_per_epoch
    if planned is not None and planned != wanted:
        lines.append(
            f"the restored LR schedule plans {planned} steps, EPOCHS x batches now gives {wanted}: the "
            "checkpoint's schedule is kept (after its end the LR stays at its minimum)"
        )
    return lines
