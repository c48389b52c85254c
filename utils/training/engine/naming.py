"""Checkpoint file names: one pattern writes them and the same pattern parses them.

``checkpoint_epoch{EPOCH:04d}_step{STEP:06d}_{YYYYmmdd_HHMMSS}.pt``

A sharded (FSDP) checkpoint is a folder named by the same pattern without ``.pt``.

Ordering always uses the parsed numbers, never the string, so that epoch 9
comes before epoch 10 and step 999999 before step 1000000 (wider numbers are
allowed; the widths are minimums).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CHECKPOINT_PREFIX",
    "CHECKPOINT_SUFFIX",
    "CHECKPOINT_SUFFIXES",
    "TEMP_MARKER",
    "ParsedName",
    "checkpoint_filename",
    "parse_checkpoint_filename",
    "checkpoint_foldername",
    "parse_checkpoint_foldername",
    "is_temporary_file",
    "temporary_path_for",
    "writer_pid",
]

CHECKPOINT_PREFIX = "checkpoint"
CHECKPOINT_SUFFIX = ".pt"
# What the listing reads besides folders: our .pt, and the file names other tools use.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
# A save in progress is written to ".<final name>.tmp-<pid>-<random>"; the
# leading dot hides it from file browsers and the marker from the listing.
TEMP_MARKER = ".tmp-"
_TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"

# The temporary name's tail, as temporary_path_for writes it: "<marker><pid>-<random hex>".
_TEMP_TAIL_RE = re.compile(rf"{re.escape(TEMP_MARKER)}(?P<pid>\d+)-[0-9a-f]+$")
_STEM = rf"^{CHECKPOINT_PREFIX}_epoch(?P<epoch>\d{{4,}})_step(?P<step>\d{{6,}})_(?P<stamp>\d{{8}}_\d{{6}})"
_NAME_RE = re.compile(rf"{_STEM}{re.escape(CHECKPOINT_SUFFIX)}$")
_FOLDER_RE = re.compile(rf"{_STEM}$")


@dataclass(frozen=True)
class ParsedName:
    """The numbers a checkpoint file name carries."""

    epoch: int
    global_step: int
    timestamp: _dt.datetime


def checkpoint_filename(epoch: int, global_step: int, when: _dt.datetime | None = None) -> str:
    """Return the file name for a checkpoint of ``epoch`` at ``global_step``.

    Args:
        epoch: the epoch index (0-based) the checkpoint was written in.
        global_step: optimizer steps taken so far.
        when: the time stamp to embed; defaults to now (local time).

    Raises:
        ValueError: a negative epoch or step.
    """
    if epoch < 0 or global_step < 0:
        raise ValueError(f"epoch and global_step must be >= 0, got {epoch=} {global_step=}")
    when = when or _dt.datetime.now()
    return (
        f"{CHECKPOINT_PREFIX}_epoch{epoch:04d}_step{global_step:06d}"
        f"_{when.strftime(_TIMESTAMP_FORMAT)}{CHECKPOINT_SUFFIX}"
    )


def parse_checkpoint_filename(name: str | os.PathLike) -> ParsedName | None:
    """Parse a checkpoint file name (or path); ``None`` when it is not one."""
    return _parsed(_NAME_RE.match(Path(name).name))


def checkpoint_foldername(epoch: int, global_step: int, when: _dt.datetime | None = None) -> str:
    """The folder name of a sharded checkpoint: :func:`checkpoint_filename` without ``.pt``.

    Raises:
        ValueError: a negative epoch or step.
    """
    return checkpoint_filename(epoch, global_step, when)[: -len(CHECKPOINT_SUFFIX)]


def parse_checkpoint_foldername(name: str | os.PathLike) -> ParsedName | None:
    """Parse a sharded checkpoint's folder name (or path); ``None`` when it is not one."""
    return _parsed(_FOLDER_RE.match(Path(name).name))


def _parsed(match: re.Match[str] | None) -> ParsedName | None:
    if match is None:
        return None
    try:
        stamp = _dt.datetime.strptime(match["stamp"], _TIMESTAMP_FORMAT)
    except ValueError:  # e.g. month 13: the name only looks like ours
        return None
    return ParsedName(int(match["epoch"]), int(match["step"]), stamp)


def is_temporary_file(name: str | os.PathLike) -> bool:
    """True for the leftovers of a save that did not finish."""
    base = Path(name).name
    return base.startswith(".") and TEMP_MARKER in base


def temporary_path_for(final_path: Path) -> Path:
    """A unique temporary path in the same folder as ``final_path``.

    Same folder, so that the final rename stays on one file system and is atomic.
    """
    token = os.urandom(4).hex()
    return final_path.with_name(f".{final_path.name}{TEMP_MARKER}{os.getpid()}-{token}")


def writer_pid(name: str | os.PathLike) -> int | None:
    """The process id that :func:`temporary_path_for` put into a temporary file's name, or None."""
    match = _TEMP_TAIL_RE.search(Path(name).name)
    return int(match["pid"]) if match and is_temporary_file(name) else None
