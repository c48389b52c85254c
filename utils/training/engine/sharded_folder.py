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
import io
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from . import format as fmt
from .errors import CheckpointError, CheckpointNotFoundError, CorruptCheckpointError, UnsafeCheckpointError
from .naming import is_temporary_file, parse_checkpoint_foldername, temporary_path_for
from .untrusted import LIMITS, read_small_file

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
    "world_size_of",
]

RECORD_NAME = fmt.METADATA_RECORD
TRAIN_STATE_NAME = "train_state.pt"
DCP_METADATA_NAME = ".metadata"
LAYOUT = "sharded"  # the record's "layout" value
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
    """A sharded checkpoint folder's JSON record, as written (no shard is read; values not yet cleaned).

    Returns:
        The record: ``save_checkpoint``'s metadata record plus ``layout`` and ``world_size``.

    Raises:
        CheckpointNotFoundError: the folder does not exist.
        CorruptCheckpointError: no record (the save never finished) or an unreadable one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointNotFoundError(folder, "is not a folder", fix="name a sharded checkpoint folder")
    try:
        data = read_small_file(folder / RECORD_NAME, LIMITS.record_bytes)
    except CheckpointNotFoundError:
        raise CorruptCheckpointError(
            folder, f"has no {RECORD_NAME}: the sharded save did not finish",
            expected=f"a folder written by the sharded saver, with {RECORD_NAME} inside",
            fix="use another checkpoint; this folder is incomplete",
        ) from None  # fmt: skip
    except CheckpointError as error:
        raise CorruptCheckpointError(folder, f"{RECORD_NAME} {error.problem}", fix=_FIX) from error
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    if not isinstance(record, dict) or fmt.FORMAT_VERSION_KEY not in record:
        raise CorruptCheckpointError(folder, f"{RECORD_NAME} is not a checkpoint record", fix=_FIX)
    return record


def world_size_of(record: dict[str, Any]) -> int | None:
    """How many processes wrote the folder, from its record; None when the record does not say."""
    world = record.get("world_size")
    return world if type(world) is int and 0 < world < 1 << 20 else None


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


def read_part(folder: str | os.PathLike, name: str) -> dict[str, Any]:
    """One of the folder's small torch files (``train_state.pt``, a rank file), with ``weights_only=True``.

    Raises:
        CorruptCheckpointError: missing, unreadable, too large, or not a dict.
        UnsafeCheckpointError: it would need arbitrary unpickling.
    """
    folder = Path(folder)
    try:
        data = read_small_file(folder / name, LIMITS.pickle_bytes)
    except CheckpointNotFoundError:
        raise CorruptCheckpointError(folder, f"{name} is missing", fix=_FIX) from None
    except CheckpointError as error:
        raise CorruptCheckpointError(folder, f"{name} {error.problem}", fix=_FIX) from error
    try:
        part = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(folder, f"{name} needs arbitrary unpickling", fix=_FIX) from error
    except Exception as error:  # every failure of foreign bytes is reported the same way
        raise CorruptCheckpointError(
            folder, f"{name} cannot be read ({type(error).__name__})", fix=_FIX
        ) from error
    if not isinstance(part, dict):
        raise CorruptCheckpointError(
            folder, f"{name} holds a {type(part).__name__}, expected a dict", fix=_FIX
        )
    return part
