"""This notebook's sharded (FSDP) checkpoint: a folder, its layout, its commit marker, its removal.

::

    checkpoint_epoch0001_step000334_20250101_120000/
        .metadata, __0_0.distcp, ...  torch.distributed.checkpoint (DCP): model and optimizer,
                                      each rank its own shards
        rank_00000.pt, ...            per rank: its random generators and data position
        train_state.pt                rank 0: the checkpoint dict without model and optimizer
        checkpoint_meta.json          our JSON record (format.METADATA_RECORD), written last

The folder is written under a hidden temporary name (``naming.temporary_path_for``) and
renamed when every rank has finished; the record inside is its commit marker, so a
folder without one is never a checkpoint. Everything here reads or removes folders
without a process group: the listing, retention and the one-process loader use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import torch

from . import format as fmt
from .errors import CheckpointNotFoundError, CorruptCheckpointError, UnsafeCheckpointError
from .metadata import normalise_metadata
from .naming import is_temporary_file, parse_checkpoint_foldername, temporary_path_for

__all__ = [
    "DCP_METADATA_NAME",
    "LAYOUT",
    "RECORD_NAME",
    "TRAIN_STATE_NAME",
    "checkpoint_folders",
    "folder_size",
    "rank_file_name",
    "read_folder_record",
    "read_part",
    "remove_checkpoint_folder",
]

RECORD_NAME = fmt.METADATA_RECORD
TRAIN_STATE_NAME = "train_state.pt"
DCP_METADATA_NAME = ".metadata"
LAYOUT = "sharded"  # the record's "layout" value
# A record holds the history (one row per epoch) and the config: far below this.
_MAX_RECORD_BYTES = 32 << 20
_FIX = "use another checkpoint (an earlier one of the same run), or load only the weights"


def rank_file_name(rank: int) -> str:
    """``rank_00003.pt``: the file holding rank 3's random generators and data position."""
    return f"rank_{rank:05d}.pt"


def checkpoint_folders(parent: str | os.PathLike) -> list[Path]:
    """The sub-folders of ``parent`` named like sharded checkpoints (none is opened)."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    return [
        Path(entry.path)
        for entry in entries
        if not is_temporary_file(entry.name)
        and parse_checkpoint_foldername(entry.name) is not None
        and entry.is_dir(follow_symlinks=False)
    ]


def read_folder_record(folder: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a sharded checkpoint folder, from its JSON record alone (no shard is read).

    Returns:
        The dict of ``metadata.read_checkpoint_metadata`` with ``kind`` "sharded",
        ``source`` "record", ``size_bytes`` (every file in the folder) and ``world_size``.

    Raises:
        CheckpointNotFoundError: the folder does not exist.
        CorruptCheckpointError: no record (the save never finished) or an unreadable one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointNotFoundError(folder, "is not a folder", fix="name a sharded checkpoint folder")
    record = _load_record(folder)
    meta = normalise_metadata(record)
    world = record.get("world_size")
    meta.update(
        kind=LAYOUT,
        source="record",
        has_optimizer=bool(record.get("has_optimizer", False)),
        has_rng_state=bool(record.get("has_rng_state", False)),
        tensor_count=record.get("tensor_count") if type(record.get("tensor_count")) is int else None,
        size_bytes=folder_size(folder),
        world_size=world if type(world) is int and world > 0 else None,
    )
    return meta


def _load_record(folder: Path) -> dict[str, Any]:
    path = folder / RECORD_NAME
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        raise CorruptCheckpointError(
            folder, f"has no {RECORD_NAME}: the sharded save did not finish",
            expected=f"a folder written by the sharded saver, with {RECORD_NAME} inside",
            fix="use another checkpoint; this folder is incomplete",
        ) from None  # fmt: skip
    except OSError as error:
        raise CorruptCheckpointError(folder, f"{RECORD_NAME} cannot be read: {error}") from error
    try:
        record = json.loads(data) if len(data) <= _MAX_RECORD_BYTES else None
    except ValueError:
        record = None
    if not isinstance(record, dict) or fmt.FORMAT_VERSION_KEY not in record:
        raise CorruptCheckpointError(
            folder, f"{RECORD_NAME} is not a checkpoint record (damaged, or larger than 32 MB)",
            fix="use another checkpoint",
        )  # fmt: skip
    return record


def folder_size(folder: str | os.PathLike) -> int:
    """The bytes of the regular files directly inside ``folder`` (0 when it cannot be read)."""
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def remove_checkpoint_folder(folder: str | os.PathLike) -> None:
    """Delete a checkpoint folder so that a half-deleted one is never listed.

    The folder is first renamed to a hidden temporary name (atomic; the listing ignores
    it), then deleted; a removal killed half-way leaves a temporary folder that the next
    save cleans (``atomic.remove_stale_temporary_files``).

    Raises:
        FileNotFoundError: the folder is gone (a concurrent retention removed it).
        OSError: the rename or the deletion failed.
    """
    folder = Path(folder)
    doomed = temporary_path_for(folder)
    os.replace(folder, doomed)
    shutil.rmtree(doomed)


def read_part(folder: Path, name: str) -> dict[str, Any]:
    """One of the folder's small torch files (``train_state.pt``, a rank file), with ``weights_only=True``.

    Raises:
        CorruptCheckpointError: missing, unreadable, or not a dict.
        UnsafeCheckpointError: it would need arbitrary unpickling.
    """
    path = Path(folder) / name
    try:
        if not stat.S_ISREG(os.stat(path, follow_symlinks=False).st_mode):  # never block on a FIFO
            raise CorruptCheckpointError(folder, f"{name} is not a regular file", fix=_FIX)
        part = torch.load(path, map_location="cpu", weights_only=True)
    except CorruptCheckpointError:
        raise
    except FileNotFoundError:
        raise CorruptCheckpointError(folder, f"{name} is missing", fix=_FIX) from None
    except Exception as error:  # every failure of foreign bytes is reported the same way
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise UnsafeCheckpointError(folder, f"{name} needs arbitrary unpickling", fix=_FIX) from error
        raise CorruptCheckpointError(
            folder, f"{name} cannot be read ({type(error).__name__})", fix=_FIX
        ) from error
    if not isinstance(part, dict):
        raise CorruptCheckpointError(
            folder, f"{name} holds a {type(part).__name__}, expected a dict", fix=_FIX
        )
    return part
