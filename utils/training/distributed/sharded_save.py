"""FSDP's checkpoint: one folder, every rank writing its own shards, committed by rank 0.

The steps (the layout is in ``engine.sharded_folder``):

1. rank 0 picks the name (its clock, its pid in the temporary name), removes the
   leftovers of killed saves, and creates the folder under the hidden temporary name;
2. every rank writes its shards of the model and optimizer with DCP (``dcp.save`` of
   ``get_state_dict``: each rank its own part, rank 0 DCP's ``.metadata``), then its
   own random generators and data position (``rank_NNNNN.pt``);
3. when every rank has succeeded, rank 0 writes ``train_state.pt`` and our JSON record
   last (stating every file of the folder with its size, and ``.metadata``'s CRC-32, which
   every reader confirms), fsyncs, renames the folder to its final name and applies retention.

A save killed at any point leaves at most a temporary folder, which the listing never
shows and the next save deletes. A failure on any rank is raised on every rank as the
same ``CheckpointSaveError``, so all ranks continue (or stop) together.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict

from utils.training.engine import format as fmt
from utils.training.engine.atomic import free_space_text, fsync_directory, remove_stale_temporary_files
from utils.training.engine.checkpoint import (
    RetentionPolicy,
    apply_retention,
    check_weights_only_safe,
    metadata_record,
)
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.naming import checkpoint_foldername, temporary_path_for
from utils.training.engine.sharded_folder import (
    FOLDER_FACTS_KEY,
    LAYOUT,
    RECORD_NAME,
    TRAIN_STATE_NAME,
    folder_facts,
    rank_file_name,
)

__all__ = ["save_sharded_checkpoint"]

# The parts each rank keeps for itself; everything else (but the tensors) goes to train_state.pt.
_PER_RANK = (fmt.RNG_STATE_KEY, fmt.DATA_STATE_KEY)


def save_sharded_checkpoint(
    context,
    checkpoint_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: Any = None,
    *,
    retention: RetentionPolicy | None = RetentionPolicy(),  # noqa: B008 (frozen, immutable)
    when: _dt.datetime | None = None,
    **parts: Any,
) -> Path:
    """Save a sharded checkpoint folder; called by every rank with its own state.

    Args:
        context: this process's DistributedContext.
        checkpoint_dir: the run's checkpoint folder (shared by every rank).
        model: the ``fully_shard`` model; optimizer: its optimizer (or None).
        retention: which older checkpoints (files and folders) rank 0 deletes afterwards.
        when: the time stamp (default: rank 0's clock).
        parts: ``epoch``, ``global_step``, ``metrics``, ``scheduler``, ``scaler``, ``history``,
            ``config``, ``rng_state``, ``data_state``, ``step_losses`` as for ``save_checkpoint``.

    Returns:
        The folder's final path, on every rank.

    Raises:
        CheckpointSaveError: on every rank, when any rank failed; no folder appears.
    """
    folder = Path(checkpoint_dir)
    when = context.broadcast(when or _dt.datetime.now())
    final = folder / checkpoint_foldername(parts["epoch"], parts["global_step"], when)
    temporary = context.broadcast(temporary_path_for(final) if context.is_main else None)
    _agree(context, final, temporary, _prepare(temporary) if context.is_main else None)
    model_state, optimizer_state = get_state_dict(model, optimizer if optimizer is not None else [])
    checkpoint = _assemble(model_state, optimizer_state, when, context.world_size, parts)
    failure = _write_shards(context, temporary, model_state, optimizer_state)
    if failure is None:
        failure = _write_rank_file(context, temporary, {k: checkpoint.get(k) for k in _PER_RANK})
    _agree(context, final, temporary, failure)
    if context.is_main:
        failure = _commit(context, temporary, final, checkpoint)
    _agree(context, final, temporary, failure if context.is_main else None)
    if context.is_main and retention is not None:
        apply_retention(folder, retention, protect=[final], run_id=checkpoint.get(fmt.RUN_ID_KEY))
    return final


def _prepare(temporary: Path) -> str | None:
    try:
        temporary.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporary_files(temporary.parent)  # files and folders of killed saves
        temporary.mkdir()
    except OSError as error:
        return _reason(error)
    return None


def _assemble(
    model_state, optimizer_state, when: _dt.datetime, world_size: int, parts: dict[str, Any]
) -> dict[str, Any]:
    """The checkpoint dict as ``save_checkpoint`` builds it (with the sharded tensors of this rank)."""
    stateful = {key: parts.pop(key, None) for key in ("scheduler", "scaler")}
    if parts.get("data_state") is not None:  # a position means nothing without the split it belongs to
        parts["data_state"] = {**parts["data_state"], "world_size": world_size}
    return fmt.build_checkpoint(
        model_state=model_state,
        optimizer_state=optimizer_state or None,
        scheduler_state=_state_of(stateful["scheduler"]),
        scaler_state=_state_of(stateful["scaler"]),
        timestamp=when.isoformat(timespec="seconds"),
        **parts,
    )


def _state_of(obj: Any) -> Any:
    return obj.state_dict() if obj is not None and hasattr(obj, "state_dict") else obj


def _write_shards(context, temporary: Path, model_state, optimizer_state) -> str | None:
    """DCP writes this rank's shards (a collective: a failure on one rank fails it on all)."""
    state = {"model": model_state, **({"optimizer": optimizer_state} if optimizer_state else {})}
    try:
        with warnings.catch_warnings():  # without a process group DCP warns that it saves alone: intended
            warnings.filterwarnings("ignore", message=".*assuming the intent is to save in a single process")
            writer = dcp.FileSystemWriter(temporary, sync_files=True)
            dcp.save(state, storage_writer=writer, no_dist=not context.has_group)
    except (Exception, dcp.api.CheckpointException) as error:  # CheckpointException is a BaseException
        return _reason(error)
    return None


def _write_rank_file(context, temporary: Path, own: dict[str, Any]) -> str | None:
    """This rank's random generators and data position, loadable with ``weights_only=True``."""
    try:
        check_weights_only_safe(own, "rank state")
        _write_torch(temporary / rank_file_name(context.rank), own)
    except OSError as error:
        return _reason(error)
    return None


def _commit(context, temporary: Path, final: Path, checkpoint: dict[str, Any]) -> str | None:
    """Rank 0: the shared state, then the record (the commit marker), then the rename."""
    shared = {k: v for k, v in checkpoint.items() if k not in (fmt.MODEL_STATE_KEY, fmt.OPTIMIZER_STATE_KEY)}
    shared = {k: v for k, v in shared.items() if k != fmt.RNG_STATE_KEY}
    record = metadata_record(checkpoint)
    record.update(layout=LAYOUT, world_size=context.world_size)
    try:
        check_weights_only_safe(shared, "train_state")
        _write_torch(temporary / TRAIN_STATE_NAME, shared)
        record[FOLDER_FACTS_KEY] = folder_facts(temporary)  # every file, which readers confirm
        _write_bytes(temporary / RECORD_NAME, json.dumps(record, default=_json_default).encode("utf-8"))
        fsync_directory(temporary)
        os.rename(temporary, final)  # atomic; fails (never merges) when the name exists
        fsync_directory(final.parent)
    except OSError as error:
        return _reason(error)
    return None


def _write_torch(path: Path, obj: Any) -> None:
    with open(path, "xb") as file:
        try:
            torch.save(obj, file)
        except RuntimeError as error:  # torch's zip writer hides the OSError (disk full) behind it
            raise OSError(f"torch.save failed: {error}") from error
        file.flush()
        os.fsync(file.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() <= 16:
        return value.tolist()
    return str(value)


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.splitlines()[0][:300] if text.strip() else type(error).__name__


def _agree(context, final: Path, temporary: Path, failure: str | None) -> None:
    """Raise the same CheckpointSaveError on every rank when any rank failed (a collective)."""
    failures = [(rank, text) for rank, text in enumerate(context.gather(failure)) if text is not None]
    if not failures:
        return
    if context.is_main:
        shutil.rmtree(temporary, ignore_errors=True)
    rank, text = failures[0]
    free = free_space_text(final.parent)
    raise CheckpointSaveError(
        final.parent,
        f"could not save {final.name} (rank {rank}: {text})" + (f" ({free})" if free else ""),
        expected="a writable folder, shared by every rank, with room for one more checkpoint",
        fix="Free disk space or choose another --checkpoint-dir; keep fewer checkpoints with a lower "
        "--keep-last / --keep-best. Earlier checkpoints are intact.",
    )
