"""Resume training from a checkpoint: choose the file, restore every piece of state, say what is missing.

``restore_training_state`` loads with ``weights_only=True`` on the CPU and restores, in
order, the model, optimizer, LR scheduler, grad scaler, random generators, data position,
counters and histories. Whatever the file lacks (a weights-only file, an older checkpoint
without RNG or data state, a state_dict from another tool) is listed in the returned
:class:`ResumeState` with what will differ; nothing is skipped silently.

This module chooses the file and restores the weights and optimizer, all or nothing;
``resume_parts`` restores the rest of the run and ``resume_report`` holds ``ResumeState``
and says what was restored and what changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
from utils.training.engine.sources import open_checkpoint
from utils.training.resume_parts import check_parts, describe_weights_only, restore_run_parts
from utils.training.resume_report import ResumeState, describe_changes, render_resume_report
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
            check_parts(path, obj)  # a malformed part fails here, before anything is changed
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
            describe_weights_only(state, record, scheduler, scaler)
        else:
            restore_run_parts(path, obj, state, optimizer, scheduler, scaler)
    except BaseException:
        snapshot.roll_back()
        raise
    copy_verified(fitted.jobs, verify=False)
    state.restored.insert(0, "model weights")


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
