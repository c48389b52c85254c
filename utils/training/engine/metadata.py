"""What a checkpoint holds (epoch, step, metrics, config), read without its tensors.

Each source reads its own metadata (see ``sources/``): our JSON record (a few KB at the
end of the file, confirmed against the file), a restricted read of a pickle, a
safetensors header, a ``config.json``, DCP's ``.metadata``. These two functions are the
engine's public entry points to them.
"""

from __future__ import annotations

import os

from .record import CheckpointRecord
from .sources import read_record
from .sources.native import read_own_record

__all__ = ["read_checkpoint_metadata", "read_metadata_record"]


def read_checkpoint_metadata(path: str | os.PathLike) -> CheckpointRecord:
    """The record of one checkpoint file or folder, without reading tensor data.

    Raises:
        CheckpointNotFoundError: no such path.
        CheckpointError: it cannot be read (e.g. permission denied).
        CorruptCheckpointError: empty, truncated, damaged, or its record disagrees with the file.
        NotACheckpointError: not a checkpoint of a known kind, or one without model weights.
        UnsafeCheckpointError: reading it would need arbitrary unpickling.
    """
    return read_record(path)


def read_metadata_record(path: str | os.PathLike) -> CheckpointRecord | None:
    """The record of a file written by ``save_checkpoint``, from its JSON record alone.

    Never unpickles anything, so retention can read every checkpoint of a folder on each save.

    Returns:
        The confirmed record, or None when the file has no record of ours (legacy, bare or foreign).

    Raises:
        The errors of :func:`read_checkpoint_metadata` for a missing, unreadable, damaged or
        suspect file.
    """
    return read_own_record(path)
