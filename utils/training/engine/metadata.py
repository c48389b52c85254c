"""What a checkpoint file holds (epoch, step, metrics, config), without reading its tensors.

Fast path: the JSON record that :func:`save_checkpoint` appends as the last
member of the zip archive (a few kilobytes read from the end of the file,
whatever the model size). Fallback for legacy, bare and foreign files: the
archive's ``data.pkl`` unpickled by :mod:`safe_unpickle`, which reads no
tensor bytes and runs no code.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from . import format as fmt
from .archive import NoEndRecordError, archive_root, read_last_member
from .errors import CorruptCheckpointError, NotACheckpointError, UnsafeCheckpointError
from .naming import parse_checkpoint_filename
from .reading import INTERRUPTED_FIX, open_checkpoint
from .safe_unpickle import RefusedGlobalError, TensorStub, load_structure

__all__ = ["METADATA_FIELDS", "normalise_metadata", "read_checkpoint_metadata", "read_metadata_record"]

# The keys of the dict read_checkpoint_metadata returns (always all present).
METADATA_FIELDS = (
    "kind",
    "format_version",
    "epoch",
    "global_step",
    "timestamp",
    "metrics",
    "history",
    "config",
    "data_state",
    "has_optimizer",
    "has_rng_state",
    "tensor_count",
    "source",
    "size_bytes",
)


def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of one checkpoint file, without reading tensor data.

    Args:
        path: a ``.pt`` file written by ``save_checkpoint``, by the notebook's
            earlier training cell (legacy), or ``torch.save(model.state_dict())`` (bare).

    Returns:
        A dict with the keys in ``METADATA_FIELDS``: ``kind`` ("full", "legacy",
        "bare"), ``format_version`` (None for legacy and bare files), ``epoch``,
        ``global_step`` (from the file name when the file lacks them), ``timestamp``
        (ISO string or None), ``metrics`` (train_loss, val_loss, learning_rate:
        float or None), ``history``, ``config``, ``data_state``, ``has_optimizer``,
        ``has_rng_state``, ``tensor_count``, ``source`` ("record" or "pickle") and
        ``size_bytes`` (the file's size).

    Raises:
        CheckpointNotFoundError: no such file, or a folder (see ``reading.open_checkpoint``).
        CheckpointError: the file cannot be read (e.g. permission denied).
        CorruptCheckpointError: empty, truncated, or not a torch zip file.
        NotACheckpointError: a readable torch file without model weights.
        UnsafeCheckpointError: reading it would need arbitrary unpickling.
    """
    path = Path(path)
    with open_checkpoint(path) as file:
        return _fill_from_name(path, _read(path, file, record_only=False))


def read_metadata_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata of a file written by ``save_checkpoint``, from its JSON record alone.

    Reads a few kilobytes at the end of the file and never unpickles anything, so
    retention can look at every checkpoint of a folder on each save.

    Returns:
        The dict of :func:`read_checkpoint_metadata` (kind "full"), or None when the file
        has no record of ours (legacy, bare or foreign files).

    Raises:
        The errors of :func:`read_checkpoint_metadata` for a missing, unreadable,
        empty or truncated file.
    """
    path = Path(path)
    with open_checkpoint(path) as file:
        meta = _read(path, file, record_only=True)
    return _fill_from_name(path, meta) if meta is not None else None


def _read(path: Path, file: BinaryIO, *, record_only: bool) -> dict[str, Any] | None:
    """The record's metadata, else (unless ``record_only``) the pickle's; with the file size."""
    size = os.fstat(file.fileno()).st_size
    record = _read_record(path, file)
    meta = _from_record(record) if record is not None else None
    if meta is None and not record_only:
        meta = _from_pickle(path, file)
    if meta is not None:
        meta["size_bytes"] = size
    return meta


def _read_record(path: Path, file: BinaryIO) -> dict | None:
    """The parsed JSON record, or None when the file has none (or an unreadable one)."""
    try:
        data = read_last_member(file, fmt.METADATA_RECORD)
    except NoEndRecordError:
        raise CorruptCheckpointError(path, _diagnose(file), fix=INTERRUPTED_FIX) from None
    except Exception:  # an odd layout (prepended data, zip64 quirks): the full zip reader decides
        return None
    if data is None:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _diagnose(file) -> str:
    """Why a file without a zip end record is not a checkpoint, in words."""
    size = file.seek(0, 2)
    file.seek(0)
    head = file.read(8)
    if size == 0:
        return "empty (0 bytes) -- the save was probably interrupted"
    if head.startswith(b"PK\x03\x04"):
        return f"truncated ({size:,} bytes): no zip central directory -- the save was probably interrupted"
    if head[:1] == b"\x80":
        return (
            "an old-style (pre-PyTorch-1.6, non-zip) torch file: its metadata cannot be read "
            "without loading it; load it once and save it again with save_checkpoint"
        )
    return f"not a PyTorch checkpoint ({size:,} bytes, no zip archive; starts with {head[:4]!r})"


def _from_record(record: dict) -> dict[str, Any] | None:
    """Metadata from the JSON record; None when the record is not one of ours."""
    if fmt.FORMAT_VERSION_KEY not in record:
        return None
    meta = normalise_metadata(record)
    meta.update(
        kind="full",
        has_optimizer=bool(record.get("has_optimizer", False)),
        has_rng_state=bool(record.get("has_rng_state", False)),
        tensor_count=_int_or_none(record.get("tensor_count")),
        source="record",
    )
    return meta


def _from_pickle(path: Path, file: BinaryIO) -> dict[str, Any]:
    """Metadata from ``<root>/data.pkl``, read with the safe structure unpickler."""
    obj, archive_bytes = _load_pickled_structure(path, file)
    kind = fmt.checkpoint_kind(obj, TensorStub)
    if kind is None:
        raise NotACheckpointError(
            path,
            f"is a torch file but holds {fmt.describe_object(obj, TensorStub)}, not model weights",
            expected="a dict with 'model_state_dict', or a state_dict of tensors",
        )
    small = (
        {} if kind == "bare" else {k: _scalar(obj[k], archive_bytes) for k in fmt.METADATA_KEYS if k in obj}
    )
    meta = normalise_metadata(small)
    meta.update(kind=kind, source="pickle", **fmt.content_facts(obj, TensorStub))
    return meta


def _load_pickled_structure(path: Path, file: BinaryIO) -> tuple[Any, Any]:
    """(unpickled structure, a reader for small storages) of a torch zip file."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            pickle_name = f"{archive_root(names)}/data.pkl"
            if pickle_name not in names:
                raise NotACheckpointError(path, "is a zip archive but not a PyTorch file (no data.pkl)")
            obj = load_structure(archive.read(pickle_name))
            return obj, _small_storages(archive, archive_root(names), obj)
    except RefusedGlobalError as error:
        raise UnsafeCheckpointError(
            path,
            f"needs arbitrary unpickling: its pickle {error}",
            fix="Open it only if you trust its source (loader: trust_pickle=True), then re-save it "
            "with save_checkpoint to get a safe file.",
        ) from error
    except (CorruptCheckpointError, UnsafeCheckpointError):
        raise
    except Exception as error:  # any damage in foreign bytes becomes one clear error
        raise CorruptCheckpointError(path, f"cannot be read as a torch zip file: {error}") from error


def _small_storages(archive: zipfile.ZipFile, root: str, obj: Any) -> dict[str, bytes]:
    """Bytes of one-element storages used as metric values (legacy files saved tensors there)."""
    metrics = obj.get(fmt.METRICS_KEY) if isinstance(obj, Mapping) else None
    found: dict[str, bytes] = {}
    if not isinstance(metrics, Mapping):
        return found
    for value in metrics.values():
        if isinstance(value, TensorStub) and value.numel == 1 and value.storage and value.storage.numel <= 64:
            found[value.storage.key] = archive.read(f"{root}/data/{value.storage.key}")
    return found


def _scalar(value: Any, storages: dict[str, bytes]) -> Any:
    """Replace one-element tensor stubs inside ``metrics`` by their numbers."""
    if isinstance(value, Mapping):
        return {k: _scalar(v, storages) for k, v in value.items()}
    if isinstance(value, TensorStub) and value.storage and value.storage.key in storages:
        data = bytearray(storages[value.storage.key])
        return torch.frombuffer(data, dtype=value.dtype)[value.offset].item() if data else None
    return value


def normalise_metadata(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The common metadata fields of a checkpoint dict or record, with checked types.

    Anything odd becomes None or empty: a non-finite or non-numeric epoch, a metric that is
    not a finite number (one-element tensors count as numbers), a history that is not a list.

    Args:
        raw: a checkpoint dict (full or legacy) or its JSON record; ``{}`` for a bare file.

    Returns:
        ``format_version``, ``epoch``, ``global_step`` (int or None), ``timestamp`` (str or
        None), ``metrics`` (every name in ``format.METRIC_NAMES``: float or None),
        ``history`` (list of dicts), ``config`` (dict) and ``data_state`` (dict or None).
    """
    metrics = raw.get(fmt.METRICS_KEY)
    metrics = dict(metrics) if isinstance(metrics, Mapping) else {}
    history = raw.get(fmt.HISTORY_KEY)
    config = raw.get(fmt.CONFIG_KEY)
    data_state = raw.get(fmt.DATA_STATE_KEY)
    return {
        "format_version": _int_or_none(raw.get(fmt.FORMAT_VERSION_KEY)),
        "epoch": _int_or_none(raw.get(fmt.EPOCH_KEY)),
        "global_step": _int_or_none(raw.get(fmt.GLOBAL_STEP_KEY)),
        "timestamp": _timestamp_text(raw.get(fmt.TIMESTAMP_KEY)),
        "metrics": {name: _float_or_none(metrics.get(name)) for name in fmt.METRIC_NAMES},
        "history": [dict(row) for row in history if isinstance(row, Mapping)]
        if isinstance(history, list)
        else [],
        "config": dict(config) if isinstance(config, Mapping) else {},
        "data_state": dict(data_state) if isinstance(data_state, Mapping) else None,
    }


def _fill_from_name(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Epoch, step and time from the file name where the file itself lacks them."""
    parsed = parse_checkpoint_filename(path.name)
    if parsed is not None:
        if meta["epoch"] is None:
            meta["epoch"] = parsed.epoch
        if meta["global_step"] is None:
            meta["global_step"] = parsed.global_step
        if meta["timestamp"] is None:
            meta["timestamp"] = parsed.timestamp.isoformat(timespec="seconds")
    return meta


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) else None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()  # legacy files stored losses as tensors
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _timestamp_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:  # seconds since the epoch, as some scripts store time.time()
            return _dt.datetime.fromtimestamp(value).isoformat(timespec="seconds")
        except (OverflowError, OSError, ValueError):
            return None
    return None
