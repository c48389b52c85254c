"""Saving checkpoints: one call builds the dict, writes it atomically and applies retention.

A save either completes or changes nothing: the file is written under a
temporary name in the same folder, its JSON metadata record is appended, it
is fsynced and renamed into place (see :mod:`atomic`). Only then are old
checkpoints deleted by the retention policy.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import os
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO

import torch

from . import format as fmt
from .archive import append_member
from .async_save import BackgroundWriter, default_writer
from .atomic import atomic_write, free_space_text, remove_stale_temporary_files
from .errors import CheckpointSaveError
from .naming import CHECKPOINT_SUFFIX, checkpoint_filename, is_temporary_file, parse_checkpoint_filename
from .prefixes import unwrap_model
from .retention import RetentionCandidate, RetentionPolicy, select_for_deletion
from .sharded_folder import checkpoint_folders, remove_checkpoint_folder

__all__ = [
    "SAFE_LEAVES",
    "RetentionPolicy",
    "apply_retention",
    "archive_facts",
    "check_weights_only_safe",
    "metadata_record",
    "save_checkpoint",
    "write_checkpoint_file",
]

# What torch.load(weights_only=True) accepts besides containers and tensors (not frozenset:
# torch 2.13 refuses it; tests/engine/test_checkpoint.py round-trips each of these).
SAFE_LEAVES = (str, bytes, int, float, bool, complex, type(None), torch.dtype, torch.device, torch.Size)


def save_checkpoint(
    checkpoint_dir: str | os.PathLike,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    optimizer: Any = None,
    *,
    epoch: int,
    global_step: int,
    metrics: Mapping[str, Any] | None,
    scheduler: Any = None,
    scaler: Any = None,
    history: list | None = None,
    config: Mapping[str, Any] | None = None,
    rng_state: Mapping[str, Any] | None = None,
    data_state: Mapping[str, Any] | None = None,
    step_losses: torch.Tensor | None = None,
    retention: RetentionPolicy | None = RetentionPolicy(),  # noqa: B008 (frozen, immutable)
    when: _dt.datetime | None = None,
    run_id: str | None = None,
    blocking: bool = True,
    writer: BackgroundWriter | None = None,
) -> Path | Future:
    """Save a checkpoint atomically into ``checkpoint_dir`` and apply retention.

    Args:
        checkpoint_dir: the folder (created when missing).
        model: the model (DataParallel / DDP / torch.compile wrappers are
            unwrapped, so names are clean), or its state_dict.
        optimizer, scheduler, scaler: objects with ``state_dict()`` (or their
            state dicts), or None.
        epoch: 0-based epoch index the save happens in.
        global_step: optimizer steps taken so far.
        metrics: ``train_loss``, ``val_loss``, ``learning_rate`` (missing or
            non-finite values are stored as None).
        history, config, rng_state, data_state, step_losses: see docs/checkpoint-format.md.
        retention: which older checkpoints to delete after the save; None keeps all.
        when: the time stamp for the name and the ``timestamp`` key (default: now).
        run_id: the training run this save belongs to (``train`` passes one; a resume keeps it).
            Retention deletes only checkpoints of the same run (None: those saved without one).
        blocking: False copies the state to host memory (waiting first for the previous
            background save of ``writer``) and writes the file and applies retention in a
            background thread (:mod:`async_save`), with the same guarantees.
        writer: the background writer for ``blocking=False`` (default: the process-wide one).

    Returns:
        The path of the new checkpoint; with ``blocking=False`` a ``concurrent.futures.Future``
        whose result is that path (also ``future.path``) or whose exception is the
        ``CheckpointSaveError`` below.

    Raises:
        CheckpointSaveError: the file could not be written (disk full, read-only
            folder, ...); earlier checkpoints are intact and no temporary file remains.
            With ``blocking=False``: raised here only when the state cannot be copied to
            host memory; a failed write is the Future's exception.
        TypeError: a part holds a value that ``torch.load(weights_only=True)`` would refuse.
    """
    folder = Path(checkpoint_dir)
    when = when or _dt.datetime.now()
    checkpoint = fmt.build_checkpoint(
        model_state=_state_of(unwrap_model(model) if isinstance(model, torch.nn.Module) else model),
        epoch=epoch,
        global_step=global_step,
        metrics=metrics,
        optimizer_state=_state_of(optimizer),
        scheduler_state=_state_of(scheduler),
        scaler_state=_state_of(scaler),
        history=history,
        config=config,
        rng_state=rng_state,
        data_state=data_state,
        step_losses=step_losses,
        timestamp=when.isoformat(timespec="seconds"),
        run_id=run_id,
    )
    tensors = check_weights_only_safe(checkpoint)
    if not blocking:
        return _save_in_background(
            writer or default_writer(), folder / checkpoint_filename(epoch, global_step, when), checkpoint,
            tensors, retention, run_id,
        )  # fmt: skip
    path = write_checkpoint_file(
        folder / checkpoint_filename(epoch, global_step, when), checkpoint, tensor_count=tensors
    )
    if retention is not None:
        apply_retention(folder, retention, protect=[path], run_id=run_id)
    return path


def _save_in_background(
    writer: BackgroundWriter,
    path: Path,
    checkpoint: dict,
    tensors: int,
    retention: RetentionPolicy | None,
    run_id: str | None,
) -> Future:
    """Hand a built checkpoint to ``writer``: snapshot now, write and apply retention in its thread."""

    def write(final: Path, snapshot: Mapping[str, Any]) -> Path:
        written = write_checkpoint_file(final, snapshot, tensor_count=tensors)
        if retention is not None:
            apply_retention(final.parent, retention, protect=[written], run_id=run_id)
        return written

    try:
        return writer.save(path, checkpoint, write)
    except (RuntimeError, MemoryError) as error:  # host memory for the snapshot (pinned or not) ran out
        raise CheckpointSaveError(
            path.parent,
            f"could not copy the state of {path.name} to host memory for a background save "
            f"({type(error).__name__}: {error})",
            expected="free host memory about the size of one checkpoint",
            fix="Set ASYNC_SAVE = False (TrainConfig.async_save=False) to save without the copy, or free "
            "memory. Earlier checkpoints are intact.",
        ) from error


def write_checkpoint_file(
    path: Path, checkpoint: Mapping[str, Any], *, tensor_count: int | None = None
) -> Path:
    """Write a built checkpoint dict to ``path`` atomically, with its JSON record.

    Creates the folder, removes stale temporary files of dead writers first.

    Args:
        path: the final file.
        checkpoint: from ``format.build_checkpoint``.
        tensor_count: its tensors, when the caller has counted them already.

    Raises:
        CheckpointSaveError: on any OSError; ``path`` and older files are untouched.
    """
    path = Path(path)
    record = metadata_record(checkpoint, tensor_count)

    def write(file: BinaryIO) -> None:
        try:
            torch.save(checkpoint, file)
        except RuntimeError as error:
            hidden = _os_error_behind(error)
            if hidden is None:
                raise
            raise hidden from error
        record[fmt.ARCHIVE_FACTS_KEY] = archive_facts(file)
        append_member(file, fmt.METADATA_RECORD, json.dumps(record, default=_json_default).encode("utf-8"))

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporary_files(path.parent)
        return atomic_write(path, write)
    except OSError as error:
        raise _save_error(path, error) from error


def metadata_record(checkpoint: Mapping[str, Any], tensor_count: int | None = None) -> dict[str, Any]:
    """The JSON record stored inside the archive: ``metadata_of`` plus ``format.content_facts``.

    Args:
        checkpoint: the checkpoint dict.
        tensor_count: its tensors, when already counted (saves a second walk of the nest).
    """
    record = fmt.metadata_of(checkpoint)
    record.update(fmt.content_facts(checkpoint, torch.Tensor))
    if tensor_count is not None:
        record["tensor_count"] = tensor_count
    return record


def archive_facts(file: BinaryIO) -> dict[str, int]:
    """What the record states about the zip that ``torch.save`` just wrote into ``file``.

    A reader confirms a record against these (``sources.native.record_disagreement``): the
    entries before the record, ``data.pkl``'s CRC-32 and size, and the bytes of tensor data.
    """
    file.seek(0)
    with zipfile.ZipFile(file) as archive:
        infos = archive.infolist()
    first = infos[0]
    root = first.filename.split("/", 1)[0]
    return {
        "entries": len(infos),
        "data_pkl_crc32": first.CRC,
        "data_pkl_size": first.file_size,
        "storage_bytes": sum(i.file_size for i in infos if i.filename.startswith(f"{root}/data/")),
    }


def apply_retention(
    folder: Path, policy: RetentionPolicy, protect: Iterable[Path] = (), run_id: str | None = None
) -> list[Path]:
    """Delete the folder's checkpoints of run ``run_id`` that ``policy`` does not keep.

    Only checkpoints written by this engine whose JSON record agrees with the file it sits
    in, and whose record names the same run, are candidates (an engine file name, our
    record, confirmed; see ``sources.native.read_own_record``): unreadable, legacy, foreign
    and suspect files, and another run's checkpoints, are never deleted and never push a
    genuine checkpoint out of the kept set. Whatever goes wrong reading one file only makes
    it no candidate. Sharded
    checkpoint folders with their record count as files do; one is deleted by renaming it
    away first, so that a half-deleted folder is never listed. A failed deletion is
    reported as a warning: the save itself succeeded.

    Returns:
        The files (and folders) deleted.
    """
    from .sources.native import read_own_record  # sources import this module's neighbours
    from .sources.sharded import read_sharded_record

    candidates = []
    for path in _own_checkpoint_files(folder) + checkpoint_folders(folder):
        try:  # the JSON record only: a legacy file is never unpickled here (and never deleted)
            record = read_sharded_record(path) if path.is_dir() else read_own_record(path)
        except Exception:  # noqa: BLE001 -- unreadable, suspect, crafted or gone: never a candidate
            continue
        if record is not None and record.run_id == run_id:
            step = record.global_step or 0
            candidates.append(RetentionCandidate(path, step, record.val_loss, record.time_order))
    deleted = []
    for path in select_for_deletion(candidates, policy, protect=protect):
        try:
            if path.is_dir():
                remove_checkpoint_folder(path)
            else:
                path.unlink()
            deleted.append(path)
        except FileNotFoundError:
            pass  # a concurrent save's retention got there first
        except OSError as error:
            warnings.warn(f"Retention could not delete {path}: {error}", RuntimeWarning, stacklevel=2)
    return deleted


def _own_checkpoint_files(folder: Path) -> list[Path]:
    """The files in ``folder`` named as this engine names checkpoints (no file is opened)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [
        folder / name
        for name in names
        if name.endswith(CHECKPOINT_SUFFIX)
        and not is_temporary_file(name)
        and parse_checkpoint_filename(name) is not None
    ]


def check_weights_only_safe(obj: Any, where: str = "checkpoint") -> int:
    """Raise TypeError naming the first value ``torch.load(weights_only=True)`` would refuse.

    Exact types are checked: a ``defaultdict``, a namedtuple, an ``IntEnum`` or a
    ``frozenset`` look like plain values but are refused by the safe loader.

    Returns:
        How many tensors ``obj`` holds (the walk counts them on the way).
    """
    kind = type(obj)
    if isinstance(obj, torch.Tensor):
        return 1
    if kind in SAFE_LEAVES:
        return 0
    if kind in (dict, collections.OrderedDict):
        count = 0
        for key, value in obj.items():
            count += check_weights_only_safe(key, f"{where} key")
            count += check_weights_only_safe(value, f"{where}[{key!r}]")
        return count
    if kind in (list, tuple, set):
        return sum(check_weights_only_safe(value, f"{where}[{index}]") for index, value in enumerate(obj))
    raise TypeError(
        f"{where} is a {kind.__module__}.{kind.__qualname__}, which "
        "torch.load(weights_only=True) refuses. Store tensors, numbers, strings, lists or dicts "
        "(e.g. numpy arrays as .tolist(), dataclasses as dicts)."
    )


def _state_of(obj: Any) -> Any:
    if obj is None or isinstance(obj, Mapping):
        return obj
    return obj.state_dict()


def _json_default(value: Any) -> Any:
    """JSON for the odd values a config may hold: small tensors as numbers, the rest as text."""
    if isinstance(value, torch.Tensor) and value.numel() <= 16:
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _os_error_behind(error: BaseException) -> OSError | None:
    """The OSError (disk full, I/O error) that a torch.save RuntimeError hides, as a fresh OSError.

    When a write fails inside ``torch.save(obj, file_object)``, torch's zip writer still
    writes its end record on the way out and raises ``RuntimeError: ... unexpected pos``,
    with the real ``OSError(ENOSPC)`` only as its context. Callers must see the OSError.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError):
            return OSError(error.errno, error.strerror or str(error), error.filename)
        error = error.__cause__ or error.__context__
    return None


def _save_error(path: Path, error: OSError) -> CheckpointSaveError:
    free = free_space_text(path.parent)
    reason = error.strerror or str(error)
    return CheckpointSaveError(
        path.parent,
        f"could not save {path.name}: {reason}" + (f" ({free})" if free else ""),
        expected="a writable folder with room for one more checkpoint (about the size of the last one)",
        fix="Free disk space or choose another CHECKPOINT_DIR (e.g. on Google Drive); keep fewer "
        "files with a lower KEEP_LAST / KEEP_BEST (RetentionPolicy). Earlier checkpoints are intact.",
    )
