"""Open a checkpoint file with ``torch.load`` safely, and turn every failure into our own error.

``torch.load`` fails in many ways (``RuntimeError`` from the zip reader,
``pickle.UnpicklingError``, ``EOFError``, ...). A user in a notebook needs to
know which of three things happened: the file is broken (pick another one),
the file would run code when unpickled (refused unless trusted), or the file
is not there. ``read_checkpoint_file`` raises only the project's
``CheckpointError`` subclasses, each naming the file and the fix, with the
original exception chained.

Zip-format files (everything ``torch.save`` wrote since PyTorch 1.6) are
memory-mapped: tensors are views of the page cache, so the parts a caller
never touches (the optimizer state) are never read.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .archive import has_end_record
from .errors import CheckpointError, CheckpointNotFoundError, CorruptCheckpointError, UnsafeCheckpointError

__all__ = ["LoadedFile", "open_checkpoint", "read_checkpoint_file", "INTERRUPTED_FIX", "DAMAGED_FIX"]

# The one fix for a file whose save never finished (the listing and the loader both use it).
INTERRUPTED_FIX = (
    "the file is incomplete -- the save was probably interrupted (e.g. a Colab disconnect); "
    "pick another checkpoint. The listing skips this file and earlier checkpoints are intact, "
    "so you may delete it"
)
DAMAGED_FIX = (
    "the file is damaged or incomplete (e.g. a save interrupted by a Colab disconnect); "
    "pick another checkpoint"
)
_FOREIGN_FIX = "pick a checkpoint written by Cell 32 (Run Training) or by torch.save"
_ZIP_MAGIC = b"PK\x03\x04"
_NOT_FOUND_FIX = "check the path; Cell 33 (Checkpoint Recovery) lists the checkpoints that exist"
# How torch names the global a weights-only load refused, in its two wordings.
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


@dataclass
class LoadedFile:
    """What ``torch.load`` returned, and how."""

    obj: Any
    mmap: bool
    warnings: list[str] = field(default_factory=list)


def read_checkpoint_file(path: str | os.PathLike, *, trust_pickle: bool = False) -> LoadedFile:
    """``torch.load`` a checkpoint onto the CPU, memory-mapped when the format allows.

    Args:
        path: the checkpoint file.
        trust_pickle: load with ``weights_only=False`` (runs code from the file: trusted files only).

    Returns:
        A ``LoadedFile`` whose tensors are views of the file (zip format) or in memory (legacy format).

    Raises:
        CheckpointNotFoundError: no such file, or a folder.
        CorruptCheckpointError: empty, truncated, random bytes, or a zip that is not a torch file.
        UnsafeCheckpointError: the file needs arbitrary unpickling and ``trust_pickle`` is False.
        CheckpointError: the file cannot be opened (e.g. permission denied).
    """
    path = Path(path)
    head = _read_head(path)
    use_mmap = head.startswith(_ZIP_MAGIC)  # mmap needs the zip format; legacy files load into memory
    caught: list[str] = []
    try:
        return LoadedFile(_torch_load(path, use_mmap, trust_pickle, caught), use_mmap, caught)
    except Exception as error:  # classified below; never escapes raw
        first = error
    if _is_refusal(first):
        raise _unsafe_error(path, first) from first
    if use_mmap:  # e.g. a file system without mmap support: try once more, reading into memory
        caught.clear()
        try:
            obj = _torch_load(path, False, trust_pickle, caught)
        except Exception as error:
            raise _classify(path, error) from error
        note = f"memory-mapping failed ({_first_line(first)}); the file was read into memory instead"
        return LoadedFile(obj, False, [note, *caught])
    raise _classify(path, first) from first


def _torch_load(path: Path, use_mmap: bool, trust_pickle: bool, caught: list[str]) -> Any:
    """``torch.load``, its warnings kept in ``caught`` rather than printed.

    On a damaged file torch warns (e.g. "Detected pickle protocol ...") just before it fails:
    the user should see our error alone. A load that succeeds reports them in LoadReport.warnings.
    """
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        try:
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=use_mmap)
        finally:
            caught.extend(f"torch: {_first_line(w.message)}" for w in recorded)


@contextlib.contextmanager
def open_checkpoint(path: Path) -> Iterator[BinaryIO]:
    """Open a checkpoint file for binary reading; an OSError (opening or reading) becomes ours.

    Args:
        path: the file.

    Yields:
        The open file.

    Raises:
        CheckpointNotFoundError: no such file, a broken symbolic link, a folder, or a
            part of the path is a file.
        CheckpointError: any other OSError (e.g. permission denied, an I/O error).
    """
    try:
        with path.open("rb") as file:
            yield file
    except CheckpointError:
        raise
    except OSError as error:
        raise _open_error(path, error) from error


def _open_error(path: Path, error: OSError) -> CheckpointError:
    if isinstance(error, IsADirectoryError) or (isinstance(error, PermissionError) and path.is_dir()):
        return CheckpointNotFoundError(
            path,
            "is a folder, not a checkpoint file",
            expected="the path of one checkpoint file (*.pt) inside it",
            fix="pass a file from list_checkpoints(folder), e.g. list_checkpoints(folder)[0].path",
        )
    if isinstance(error, FileNotFoundError):
        link = path.is_symlink()
        problem = "is a broken symbolic link: its target does not exist" if link else "does not exist"
        return CheckpointNotFoundError(
            path, problem, expected="an existing checkpoint file", fix=_NOT_FOUND_FIX
        )
    if isinstance(error, NotADirectoryError):  # a folder on the way is a file (CHECKPOINT_DIR names a file?)
        return CheckpointNotFoundError(
            path,
            "does not exist: a part of its path is a file, not a folder",
            expected="an existing checkpoint file",
            fix="check the path (is CHECKPOINT_DIR a file?); Cell 33 lists the checkpoints that exist",
        )
    return CheckpointError(
        path, f"cannot be read: {error.strerror or error}", fix="check the file's permissions"
    )


def _read_head(path: Path) -> bytes:
    """The first bytes of the file; raises for a missing file, a folder, or an empty file."""
    with open_checkpoint(path) as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if not head:
        raise CorruptCheckpointError(
            path, "is empty (0 bytes)", expected="a PyTorch checkpoint", fix=INTERRUPTED_FIX
        )
    return head


def _is_refusal(error: Exception) -> bool:
    """A weights-only load refused a global: the file wants to run code (or build an object).

    Damage can mangle a safe name instead (``collections.Ord``, a legacy file cut inside
    ``torch._utils._rebuild_tens``): such a name counts as damage, not a refusal.
    """
    if not isinstance(error, pickle.UnpicklingError):
        return False
    match = _REFUSED_GLOBAL.search(str(error))
    return match is not None and not _broken_name(match.group(1))


def _broken_name(dotted: str) -> bool:
    """True for a mangled version of a name that torch's own files use (``collections.Ord``).

    Only the packages a torch file refers to by itself are checked, by attribute look-ups on
    modules already imported; a name under any other package is a real reference (refused).
    """
    parts = dotted.split(".")
    if parts[0] not in _TORCH_FILE_PACKAGES or parts[0] not in sys.modules:
        return False
    obj: Any = sys.modules[parts[0]]
    for attribute in parts[1:]:
        obj = getattr(obj, attribute, _MISSING)
        if obj is _MISSING:
            return True
    return False


_MISSING = object()
# The packages whose names torch.save itself writes into a checkpoint's pickle.
_TORCH_FILE_PACKAGES = frozenset({"torch", "collections", "builtins", "_codecs", "copyreg"})


def _unsafe_error(path: Path, error: Exception) -> UnsafeCheckpointError:
    match = _REFUSED_GLOBAL.search(str(error))
    what = match.group(1) if match else "an object that is not a tensor, number, string, list or dict"
    return UnsafeCheckpointError(
        path,
        f"needs `{what}` to be unpickled; loading it would run code from the file, so it was refused",
        expected="a checkpoint of tensors, numbers, strings, lists and dicts (what Cell 32 writes)",
        fix="use a checkpoint written by this notebook; only for a file you trust, opt in with "
        "load_model_weights(model, path, trust_pickle=True)",
    )


def _classify(path: Path, error: Exception) -> CheckpointError:
    """Map a failed ``torch.load`` to the project's error for it."""
    if isinstance(error, FileNotFoundError):  # removed between the check and the load
        return CheckpointNotFoundError(path, "disappeared while it was being read", fix="check the path")
    if isinstance(error, PermissionError):
        return CheckpointError(path, "cannot be read: permission denied", fix="check the file's permissions")
    if _is_refusal(error):
        return _unsafe_error(path, error)
    text = str(error)
    if "central directory" in text or isinstance(error, EOFError) or _zip_end_missing(path):
        problem = "is truncated: its end is missing"
    elif "not in a subdirectory" in text or "data.pkl" in text or 'hasRecord("version")' in text:
        problem = "is a zip archive, but not one written by torch.save"
        return CorruptCheckpointError(path, problem, expected="a PyTorch checkpoint", fix=_FOREIGN_FIX)
    else:
        problem = f"cannot be read as a PyTorch checkpoint ({type(error).__name__}: {_first_line(error)})"
        return CorruptCheckpointError(
            path, problem, expected="a complete PyTorch checkpoint", fix=DAMAGED_FIX
        )
    return CorruptCheckpointError(
        path, problem, expected="a complete PyTorch checkpoint", fix=INTERRUPTED_FIX
    )


def _zip_end_missing(path: Path) -> bool:
    """A zip file whose end-of-archive record is gone: the tail of the file was never written."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC and not has_end_record(handle)
    except OSError:
        return False


def _first_line(error: BaseException) -> str:
    inner = error.__cause__ or error.__context__
    if str(error).startswith("Weights only load failed") and inner is not None:
        error = inner  # torch wraps the real reason in a long paragraph
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:200]
