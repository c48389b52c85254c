"""Checksums of the weights inside a checkpoint: damage that still loads, caught before loading.

``torch.load`` does not check the CRC-32 that the zip format stores for every member, so
bytes changed inside tensor data after a complete save (a disk or Drive sync error) load
without complaint, and comparing the model with the file afterwards only confirms the
damage. This module re-reads the members that hold the *model's* tensors (never the
optimizer state) through ``zipfile``, which checks each one's CRC-32.
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections import defaultdict

from . import format as fmt
from .archive import archive_root
from .errors import CorruptCheckpointError
from .safe_unpickle import TensorStub, load_structure

__all__ = ["check_weight_checksums", "damaged_weight_records"]

_CHUNK = 16 << 20  # bytes per read: the CRC is checked when a member has been read to its end


def damaged_weight_records(path: str | os.PathLike) -> list[str] | None:
    """The model tensors whose bytes in the file fail their stored CRC-32.

    Args:
        path: a checkpoint file that ``torch.load`` has already read successfully.

    Returns:
        The names of the damaged weight tensors (empty when all are intact), or None when
        the file carries no checksums to compare (the pre-zip legacy format) or its
        structure cannot be read without tensors.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            root = archive_root(archive.namelist())
            structure = load_structure(archive.read(f"{root}/data.pkl"))
            members = _weight_members(structure, root)
            if members is None:
                return None
            return sorted(
                name for member, names in members.items() if _damaged(archive, member) for name in names
            )
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, OSError, EOFError, ValueError):
        return None


def check_weight_checksums(path: str | os.PathLike) -> bool:
    """Raise when the weights' bytes fail the file's CRC-32s (call before touching a model).

    Returns:
        True when the checksums were compared, False when the file has none (legacy format).

    Raises:
        CorruptCheckpointError: naming the damaged tensors.
    """
    damaged = damaged_weight_records(path)
    if damaged:
        shown = ", ".join(damaged[:5]) + (f", ... ({len(damaged) - 5} more)" if len(damaged) > 5 else "")
        count = f"{len(damaged)} tensor" if len(damaged) == 1 else f"{len(damaged)} tensors"
        raise CorruptCheckpointError(
            path,
            f"is damaged: {count} fail the file's own CRC-32 checksum ({shown}); "
            "the bytes changed after the file was written (a disk or sync error)",
            expected="weights whose bytes match the checksums stored when the checkpoint was saved",
            fix="use another checkpoint (Cell 33 lists them; Cell 34 names the next valid one); "
            "this file cannot be repaired",
        )
    return damaged is not None


def _weight_members(structure: object, root: str) -> dict[str, list[str]] | None:
    """zip member -> the weight names stored in it (tied tensors share one member)."""
    weights = fmt.model_state_of(structure, TensorStub)
    if weights is None:
        return None
    members: dict[str, list[str]] = defaultdict(list)
    for name, stub in weights.items():
        if isinstance(stub, TensorStub) and stub.storage is not None:
            members[f"{root}/data/{stub.storage.key}"].append(str(name))
    return members


def _damaged(archive: zipfile.ZipFile, member: str) -> bool:
    try:
        with archive.open(member) as data:
            while data.read(_CHUNK):
                pass
    except (zipfile.BadZipFile, zlib.error, KeyError, OSError, EOFError):
        return True  # a CRC mismatch, a missing member, or bytes that cannot be read
    return False
