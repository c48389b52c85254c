"""The torch-file reader's failures as errors that name the file: what was found, what was expected, the fix.

:mod:`archive` and :mod:`safe_unpickle` raise their own low-level errors; :mod:`torchfile` runs
their reads through :func:`zip_call` and :func:`unpickle_call`, which turn them into
``CorruptCheckpointError`` / ``UnsafeCheckpointError`` with one of the fixes below. A file that
is neither a zip archive nor a pickle is described by :func:`describe_foreign` without echoing
its bytes.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import archive
from .errors import CorruptCheckpointError, UnsafeCheckpointError
from .safe_unpickle import BudgetExceededError, RefusedGlobalError
from .untrusted import UntrustedFile

__all__ = [
    "INTERRUPTED_FIX",
    "DAMAGED_FIX",
    "TRUST_FIX",
    "zip_call",
    "unpickle_call",
    "unsafe_error",
    "describe_foreign",
]

INTERRUPTED_FIX = (
    "the file is incomplete -- the save was probably interrupted (e.g. a Colab disconnect); "
    "pick another checkpoint. The listing skips this file and earlier checkpoints are intact, "
    "so you may delete it"
)
DAMAGED_FIX = "the file is damaged or incomplete (e.g. a save interrupted by a Colab disconnect); pick another checkpoint"
TRUST_FIX = (
    "open it only if you trust its source (load_model_weights(..., trust_pickle=True)), then re-save it "
    "with save_checkpoint to get a safe file"
)


def zip_call(path: Path, read: Callable[[], Any], *, truncated: bool = False) -> Any:
    """Run an :mod:`archive` read; its errors become CorruptCheckpointError naming the file."""
    try:
        return read()
    except archive.NoEndRecordError:
        raise CorruptCheckpointError(
            path,
            "is truncated: its end (the zip directory) is missing -- the save was probably interrupted",
            expected="a complete PyTorch checkpoint",
            fix=INTERRUPTED_FIX,
        ) from None
    except archive.ArchiveError as error:
        problem = (
            str(error) if str(error).startswith("refused:") else f"has a damaged zip structure ({error})"
        )
        raise CorruptCheckpointError(
            path, problem, expected="a complete PyTorch checkpoint", fix=DAMAGED_FIX
        ) from None


def unpickle_call(path: Path, load: Callable[[], Any]) -> Any:
    """Run the restricted unpickler; its refusals and damage become our errors."""
    try:
        return load()
    except RefusedGlobalError as error:
        raise unsafe_error(path, error.qualified_name) from error
    except BudgetExceededError as error:
        raise CorruptCheckpointError(
            path,
            f"its pickle was {error}",
            expected="a checkpoint of bounded size and depth",
            fix=DAMAGED_FIX,
        ) from error
    except pickle.UnpicklingError as error:
        raise CorruptCheckpointError(
            path,
            f"its pickle cannot be read ({error})",
            expected="a complete PyTorch checkpoint",
            fix=DAMAGED_FIX,
        ) from error


def unsafe_error(path: Path, what: str) -> UnsafeCheckpointError:
    """The refusal of a file whose pickle needs ``what`` (an escaped global name) to be unpickled."""
    return UnsafeCheckpointError(
        path,
        f"needs `{what}` to be unpickled; loading it would run code from the file, so it was refused",
        expected="a checkpoint of tensors, numbers, strings, lists and dicts (what save_checkpoint writes)",
        fix=TRUST_FIX,
    )


def describe_foreign(handle: UntrustedFile) -> str:
    """Why a file that is neither zip nor pickle is not a checkpoint, without echoing its bytes."""
    head = handle.head(8)
    if head.startswith(b"PK"):
        return f"is a zip file whose first member is damaged ({handle.size:,} bytes)"
    text = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
    kind = "text" if text else "binary data of an unknown format"
    return f"is not a PyTorch checkpoint ({handle.size:,} bytes of {kind}; no zip archive)"
