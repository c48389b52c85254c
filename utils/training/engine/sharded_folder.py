"""This notebook's sharded (FSDP) checkpoint: a folder, its layout, its record, its removal.

::

    checkpoint_epoch0001_step000334_20250101_120000/
        .metadata, __0_0.distcp, ...  torch.distributed.checkpoint (DCP): model and optimizer,
                                      each rank its own shards
        rank_00000.pt, ...            per rank: its random generators and data position
        train_state.pt                rank 0: the checkpoint dict without model and optimizer
        checkpoint_meta.json          our JSON record (format.METADATA_RECORD), written last

The folder is written under a hidden temporary name (``naming.temporary_path_for``) and
renamed when every rank has finished; the record inside is its commit marker, so a
folder without one is never a checkpoint. The record is also evidence, as the record in
our files is: it states every file of the folder with its size and ``.metadata``'s
CRC-32 (:func:`folder_facts`), and every reader confirms them (a few ``stat`` calls and
one small read) before the record counts, so a folder whose record claims what its files
do not hold is never listed, never resumed and never pushes a genuine checkpoint out of
retention. Everything here reads or removes folders without a process group: the
listing, retention and the one-process loader use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import format as fmt
from .errors import CheckpointError, CheckpointNotFoundError, CorruptCheckpointError
from .naming import is_temporary_file, parse_checkpoint_foldername, temporary_path_for
from .text import safe_text
from .untrusted import LIMITS, load_json, read_small_file

__all__ = [
    "DCP_METADATA_MAX_BYTES",
    "DCP_METADATA_NAME",
    "FOLDER_FACTS_KEY",
    "LAYOUT",
    "RECORD_NAME",
    "TRAIN_STATE_NAME",
    "checkpoint_folders",
    "file_name_problem",
    "folder_facts",
    "folder_size",
    "rank_file_name",
    "rank_parts",
    "read_folder_record",
    "read_part",
    "remove_checkpoint_folder",
    "world_size_of",
]

RECORD_NAME = fmt.METADATA_RECORD
TRAIN_STATE_NAME = "train_state.pt"
DCP_METADATA_NAME = ".metadata"
DCP_METADATA_MAX_BYTES = 256 << 20  # DCP's index of a very large model is a few MB
LAYOUT = "sharded"  # the record's "layout" value
FOLDER_FACTS_KEY = "folder"  # the record's statement about the folder it sits in
_FIX = "use another checkpoint (an earlier one of the same run), or load only the weights"
_DISAGREES_FIX = (
    "use another checkpoint; this folder was changed or copied in part after it was saved (it is "
    "not listed, and retention never deletes it)"
)


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
    """A sharded checkpoint folder's JSON record, confirmed against the folder (no shard is read).

    Returns:
        The record: ``save_checkpoint``'s metadata record plus ``layout``, ``world_size`` and
        the folder's facts (values not yet cleaned).

    Raises:
        CheckpointNotFoundError: the folder does not exist.
        CorruptCheckpointError: no record (the save never finished), an unreadable one, or one
            that disagrees with the folder (a file it states is missing or of another size).
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
    record = _parsed_record(folder, data)
    problem = _disagreement(folder, record)
    if problem is not None:
        raise CorruptCheckpointError(
            folder, f"its record disagrees with the folder ({problem})",
            expected=f"every file that {RECORD_NAME} states, as the sharded saver wrote it", fix=_DISAGREES_FIX,
        )  # fmt: skip
    return record


def _parsed_record(folder: Path, data: bytes) -> dict[str, Any]:
    """The record's JSON, under the engine's container budget (a million empty lists is refused)."""
    try:
        record = load_json(data, LIMITS.record_containers)
    except ValueError as error:
        if not str(error).startswith("refused:"):
            record = None
        else:
            raise CorruptCheckpointError(folder, f"{RECORD_NAME} is {error}", fix=_FIX) from None
    if not isinstance(record, dict) or fmt.FORMAT_VERSION_KEY not in record:
        raise CorruptCheckpointError(folder, f"{RECORD_NAME} is not a checkpoint record", fix=_FIX)
    return record


def folder_facts(folder: str | os.PathLike) -> dict[str, Any]:
    """What the record states about the folder the sharded saver just filled (before the record).

    Every regular file with its size, and the CRC-32 of DCP's ``.metadata`` (which names the
    shards, their byte ranges and every tensor). A reader confirms them (:func:`read_folder_record`).

    Raises:
        OSError: the folder or ``.metadata`` cannot be read.
    """
    folder = Path(folder)
    files = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name != RECORD_NAME and entry.is_file(follow_symlinks=False):
                files[entry.name] = entry.stat(follow_symlinks=False).st_size
    return {
        "files": dict(sorted(files.items())),
        "metadata_crc32": zlib.crc32((folder / DCP_METADATA_NAME).read_bytes()),
    }


def _disagreement(folder: Path, record: Mapping[str, Any]) -> str | None:
    """Why ``record`` does not describe ``folder``; None when it agrees (a few stats, one small read)."""
    parsed = parse_checkpoint_foldername(folder.name)
    if parsed is not None:
        for key, from_name in (("epoch", parsed.epoch), ("global_step", parsed.global_step)):
            if record.get(key) != from_name or type(record.get(key)) is not int:
                return f"the folder's name says {key} {from_name}, the record {_short(record.get(key))}"
    facts = record.get(FOLDER_FACTS_KEY)
    if facts is None:
        return _unconfirmed_layout(folder)
    files = facts.get("files") if isinstance(facts, Mapping) else None
    if not isinstance(files, Mapping) or not 0 < len(files) <= LIMITS.folder_entries:
        return f"its {FOLDER_FACTS_KEY!r} facts are not a list of files"
    world = world_size_of(record)
    if world is None or world > len(files):
        return f"it states {_short(record.get('world_size'))} processes and {len(files):,} files"
    needed = [DCP_METADATA_NAME, TRAIN_STATE_NAME, *(rank_file_name(r) for r in range(world))]
    missing = [name for name in needed if name not in files]
    if missing:
        return f"it states no {missing[0]}"
    for name, size in files.items():
        problem = _file_problem(folder, name, size)
        if problem is not None:
            return problem
    return _metadata_problem(folder, files[DCP_METADATA_NAME], facts.get("metadata_crc32"))


def _file_problem(folder: Path, name: Any, size: Any) -> str | None:
    shown = safe_text(name, 80)
    if not isinstance(name, str) or file_name_problem(name) is not None:
        return f"it states a file named {shown}, which cannot be inside the folder"
    try:
        found = os.stat(folder / name, follow_symlinks=False)
    except FileNotFoundError:
        return f"{shown} is missing"
    except (OSError, ValueError) as error:
        return f"{shown} cannot be read ({type(error).__name__})"
    if not stat.S_ISREG(found.st_mode):
        return f"{shown} is not a regular file"
    if found.st_size != size or type(size) is not int:
        return f"{shown}: the record says {_short(size)} bytes, the folder has {found.st_size:,}"
    return None


def _metadata_problem(folder: Path, size: int, crc: Any) -> str | None:
    if size > DCP_METADATA_MAX_BYTES:
        return f"{DCP_METADATA_NAME} is {size:,} bytes, more than an index may have"
    try:
        data = read_small_file(folder / DCP_METADATA_NAME, DCP_METADATA_MAX_BYTES)
    except CheckpointError as error:
        return f"{DCP_METADATA_NAME} {error.problem}"
    if len(data) != size or zlib.crc32(data) != crc:
        return f"{DCP_METADATA_NAME}'s CRC-32 is {zlib.crc32(data)}, the record says {_short(crc)}"
    return None


def _unconfirmed_layout(folder: Path) -> str | None:
    """A record written before the facts: DCP's index must at least parse and name existing shards."""
    from .dcp_index import read_dcp_metadata  # imports torch.distributed.checkpoint: seconds, once

    try:
        read_dcp_metadata(folder)
    except CheckpointError as error:
        return f"it states no facts about the folder, and {error.problem}"
    return None


def file_name_problem(name: str) -> str | None:
    """Why ``name`` (chosen by a file) cannot name a file directly inside a folder; None when it can."""
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        return "lies outside the folder (a path separator, or empty, . or ..)"
    if "\0" in name:
        return "holds a NUL character"
    try:
        size = len(os.fsencode(name))
    except ValueError:  # a lone surrogate that no file name encodes
        return "holds characters no file name can"
    return f"is {size:,} bytes long (a file name has at most 255)" if size > 255 else None


def _short(value: Any) -> str:
    text = safe_text(repr(value), None)
    return text if len(text) <= 24 else text[:21] + "..."


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
    """One of the folder's small torch files (``train_state.pt``, a rank file), read by the engine's
    own reader (``torch_parts``): budgeted, restricted, tensors checked against the file.

    Raises:
        CorruptCheckpointError: missing, unreadable, too large, over the unpickler's budget, or not a dict.
        UnsafeCheckpointError: it would need arbitrary unpickling.
    """
    from .torch_parts import read_torch_part  # torchfile is not needed by the listing

    folder = Path(folder)
    try:
        part = read_torch_part(folder / name)
    except CheckpointNotFoundError:
        raise CorruptCheckpointError(folder, f"{name} is missing", fix=_FIX) from None
    except CheckpointError as error:
        kind = type(error) if type(error) is not CheckpointError else CorruptCheckpointError
        raise kind(folder, f"{name} {error.problem}", fix=_FIX) from error
    if not isinstance(part, dict):
        raise CorruptCheckpointError(
            folder, f"{name} holds a {type(part).__name__}, expected a dict", fix=_FIX
        )
    return part


def rank_parts(folder: str | os.PathLike, world_size: int) -> list[dict[str, Any]]:
    """Every rank's file (its random generators and data position), rank 0 first.

    Raises:
        CorruptCheckpointError, UnsafeCheckpointError: see :func:`read_part`.
    """
    return [read_part(folder, rank_file_name(rank)) for rank in range(world_size)]
