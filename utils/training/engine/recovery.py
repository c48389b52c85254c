"""Browse a checkpoint folder without loading weights, and rebuild the training results.

``list_checkpoints`` reads only each checkpoint's metadata (our JSON record, a
safetensors header, a ``config.json``, DCP's ``.metadata``, a restricted read of a
pickle; see :mod:`sources`), so listing 20 GPT-2 checkpoints takes milliseconds, and
entries that are empty, truncated, hostile or not checkpoints are skipped with one
line each instead of ending the listing.

Terminal view::

    python -m utils.training.engine.recovery [DIR]
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from .errors import CheckpointError, NoCheckpointsError
from .naming import CHECKPOINT_PREFIX, CHECKPOINT_SUFFIXES, is_temporary_file
from .record import CheckpointRecord
from .sources import claiming_source, probe_path
from .sources import unknown_error as _unknown_file
from .text import safe_text

__all__ = [
    "CheckpointInfo",
    "CheckpointRecord",
    "ScanResult",
    "format_checkpoint_table",
    "latest_checkpoint",
    "list_checkpoints",
    "main",
    "newest",
    "recover_training_results",
    "results_from_scan",
    "scan_checkpoints",
    "skip_lines",
]

DEFAULT_CHECKPOINT_DIR = "./checkpoints"
# The listing's entries are CheckpointRecords; the old name stays for existing code.
CheckpointInfo = CheckpointRecord


class ScanResult(NamedTuple):
    """The valid checkpoints of a folder (sorted as ``list_checkpoints``) and the skipped entries."""

    checkpoints: list[CheckpointRecord]
    skipped: list[tuple[Path, str]]


def scan_checkpoints(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR) -> ScanResult:
    """Read the record of every checkpoint directly in ``checkpoint_dir``, metadata only.

    Candidates are the files named like checkpoints (``*.pt``, ``*.pth``, ``*.ckpt``, ``*.bin``,
    ``*.safetensors``) and the sub-folders that a source recognises (Hugging Face, DCP, our
    sharded checkpoints); a folder that is itself one checkpoint lists as that one entry.
    Temporary files of unfinished saves are ignored silently; every other candidate that
    cannot be read is recorded in ``skipped`` with a reason. One bad entry never ends the
    listing, whatever goes wrong inside it.

    Returns:
        ScanResult; both lists are empty for a missing or empty folder.
    """
    folder = Path(checkpoint_dir)
    if not folder.exists():
        return ScanResult([], [])
    if not folder.is_dir():
        return ScanResult([], [(folder, "is a file, not a folder")])
    candidates = _candidates(folder)
    ours = any(p.name.startswith(f"{CHECKPOINT_PREFIX}_epoch") for p, _ in candidates)
    whole = None if ours else _folder_as_checkpoint(folder)
    if whole is not None:
        return ScanResult([whole], [])
    records, skipped = [], []
    for path, is_dir in candidates:
        try:
            record = _record_of(path, is_dir)
        except Exception as error:  # noqa: BLE001 -- one entry never ends the listing
            if os.path.lexists(path):  # else deleted meanwhile by a concurrent save's retention
                skipped.append((path, _reason(error)))
            continue
        if record is not None:
            records.append(record)
    return ScanResult(sorted(records, key=_listing_order), skipped)


def _record_of(path: Path, is_dir: bool | None = None) -> CheckpointRecord | None:
    """The entry's record; None for a folder no source recognises (logs/, samples/: not reported)."""
    with probe_path(path, is_dir=is_dir) as probe:
        source = claiming_source(probe)
        if source is None and probe.is_dir and not _named_like_a_checkpoint(path.name):
            return None
        if source is None:
            raise _unknown_file(probe)
        return source.read_record(probe)


def _named_like_a_checkpoint(name: str) -> bool:
    """A folder named as a checkpoint file would be: worth a skip line when it is not one."""
    return name.endswith(CHECKPOINT_SUFFIXES) or name.startswith(f"{CHECKPOINT_PREFIX}_epoch")


def _folder_as_checkpoint(folder: Path) -> CheckpointRecord | None:
    """The record of ``folder`` when the folder itself is one checkpoint (e.g. a Hugging Face folder).

    Asked only of a folder holding none of our checkpoints: a stray ``.metadata`` or
    ``config.json`` beside them must not hide them behind one foreign entry.
    """
    try:
        return _record_of(folder)
    except Exception:  # noqa: BLE001 -- then it is a folder of checkpoints, listed entry by entry
        return None


def _candidates(folder: Path) -> list[tuple[Path, bool]]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.name.startswith(".") or is_temporary_file(entry.name):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir or entry.name.endswith(CHECKPOINT_SUFFIXES):
            found.append((Path(entry.path), is_dir))
    return found


def _reason(error: Exception) -> str:
    if isinstance(error, CheckpointError):
        return error.problem
    if isinstance(error, OSError):
        return f"cannot be read: {error.strerror or error}"
    return f"cannot be read ({type(error).__name__}: {safe_text(error, 120)})"


def _print_skip(line: str) -> None:
    print(line, file=sys.stderr)


def list_checkpoints(
    checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR,
    *,
    on_skip: Callable[[str], None] | None = _print_skip,
) -> list[CheckpointRecord]:
    """The valid checkpoints of a folder, best first, without loading any weights.

    Args:
        checkpoint_dir: the folder; the files and checkpoint folders directly inside it are read.
        on_skip: called with one line ``"Skipped <name>: <reason>"`` per entry that is not a
            valid checkpoint (default: print to stderr; None: silent).

    Returns:
        Records sorted by val_loss (lowest first; ties: higher global_step first), then the
        records without val_loss, newest first (global_step, then timestamp). Empty for a
        missing or empty folder, or a path that is a file.
    """
    result = scan_checkpoints(checkpoint_dir)
    if on_skip is not None:
        for line in skip_lines(result.skipped):
            on_skip(line)
    return result.checkpoints


def skip_lines(skipped: Iterable[tuple[Path, str]]) -> list[str]:
    """One printable line per skipped entry (names from the disk escaped)."""
    return [f"Skipped {safe_text(path.name, 120)}: {safe_text(reason)}" for path, reason in skipped]


def latest_checkpoint(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR) -> CheckpointRecord | None:
    """The checkpoint with the highest global step (ties: newest timestamp); None when there is none."""
    return newest(scan_checkpoints(checkpoint_dir).checkpoints)


def newest(checkpoints: Iterable[CheckpointRecord]) -> CheckpointRecord | None:
    """The record with the highest global step (ties: newest timestamp, then name); None when empty."""
    return max(checkpoints, key=lambda record: record.recency, default=None)


def _listing_order(record: CheckpointRecord) -> tuple:
    """Best val_loss first; without val_loss after them, newest first. The name only breaks exact ties."""
    step, time_order, name = record.recency
    if record.val_loss is not None:
        return (0, record.val_loss, -step, -time_order, name)
    return (1, 0.0, -step, -time_order, name)


def recover_training_results(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR) -> dict[str, Any]:
    """The training results, rebuilt from checkpoint metadata alone (see :func:`results_from_scan`).

    Raises:
        NoCheckpointsError: the folder holds no valid checkpoint.
    """
    return results_from_scan(scan_checkpoints(checkpoint_dir), checkpoint_dir)


def results_from_scan(scan: ScanResult, checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """The results dict, from a scan the caller already made (its listing order is kept).

    Returns:
        ``checkpoint_path`` (str, the best checkpoint: the first listed), ``best`` (its
        record), ``best_epoch``, ``best_val_loss`` (None when no checkpoint has a
        validation loss yet, e.g. only mid-epoch saves), ``history`` (per-epoch dicts, from
        the newest checkpoint, or one row per checkpoint when no file stores a history),
        ``epochs``, ``train_losses``, ``val_losses``, ``learning_rates`` (lists from that
        history), ``config``, ``checkpoint_dir``, ``latest_checkpoint_path``, ``latest``
        (its record) and ``checkpoints`` (the listing).

    Raises:
        NoCheckpointsError: ``scan`` holds no valid checkpoint.
    """
    latest = newest(scan.checkpoints)
    if latest is None:
        raise _no_checkpoints(Path(checkpoint_dir), scan.skipped)
    best = scan.checkpoints[0]
    history = _history_of(latest, scan.checkpoints)
    return {
        "checkpoint_path": str(best.path),
        "best": best,
        "best_epoch": best.epoch,
        "best_val_loss": best.val_loss,
        "history": history,
        "epochs": [row.get("epoch") for row in history],
        "train_losses": [row.get("train_loss") for row in history],
        "val_losses": [row.get("val_loss") for row in history],
        "learning_rates": [row.get("learning_rate") for row in history],
        "config": dict(best.config or latest.config),
        "checkpoint_dir": str(checkpoint_dir),
        "latest_checkpoint_path": str(latest.path),
        "latest": latest,
        "checkpoints": scan.checkpoints,
    }


def _history_of(latest: CheckpointRecord, records: list[CheckpointRecord]) -> list[dict]:
    """The newest stored history; for files without one, a row per checkpoint in step order."""
    if latest.history:
        return [dict(row) for row in latest.history]
    rows = {}
    for record in sorted(records, key=lambda r: r.recency):
        key = record.epoch if record.epoch is not None else record.name
        rows[key] = {
            "epoch": record.epoch,
            "global_step": record.global_step,
            "train_loss": record.train_loss,
            "val_loss": record.val_loss,
            "learning_rate": record.learning_rate,
        }
    return list(rows.values())


def _no_checkpoints(folder: Path, skipped: list[tuple[Path, str]]) -> NoCheckpointsError:
    if skipped:
        count = "1 entry" if len(skipped) == 1 else f"{len(skipped)} entries"
        problem = f"holds no valid checkpoint ({count} skipped: " + "; ".join(
            f"{safe_text(path.name, 80)}: {safe_text(reason, 200)}" for path, reason in skipped[:3]
        )
        problem += ", ...)" if len(skipped) > 3 else ")"
    else:
        problem = "holds no checkpoint" if folder.is_dir() else "does not exist"
    return NoCheckpointsError(
        folder,
        problem,
        expected="checkpoint files (checkpoint_epoch####_step######_YYYYmmdd_HHMMSS.pt from save_checkpoint, "
        "or another tool's checkpoints)",
        fix="train first (save_checkpoint writes checkpoints), or point to the folder that holds them",
    )


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def format_checkpoint_table(checkpoints: list[CheckpointRecord], skipped: list[tuple[Path, str]] = ()) -> str:
    """A plain-text table of the listing (one row per checkpoint), then one line per skipped entry."""
    header = f"{'#':>3}  {'epoch':>5}  {'step':>8}  {'train':>8}  {'val':>8}  {'lr':>9}  {'MB':>9}  "
    header += f"{'timestamp':<19}  {'kind':<11}  name"
    lines = [header, "-" * len(header)]
    for index, record in enumerate(checkpoints):
        lines.append(
            f"{index:>3}  {_number(record.epoch, 'd'):>5}  {_number(record.global_step, 'd'):>8}  "
            f"{_number(record.train_loss, '.4f'):>8}  {_number(record.val_loss, '.4f'):>8}  "
            f"{_number(record.learning_rate, '.2e'):>9}  {record.size_mb:>9.1f}  "
            f"{(record.timestamp or '-')[:19]:<19}  {record.kind:<11}  {safe_text(record.name, 120)}"
            + (f" -> {safe_text(record.link_target, 120)}" if record.link_target else "")
        )
    if not checkpoints:
        lines.append("(no valid checkpoints)")
    lines.extend(skip_lines(skipped))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.training.engine.recovery [DIR]``: print the listing; exit 1 when empty."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(f"usage: python -m utils.training.engine.recovery [DIR]  (default {DEFAULT_CHECKPOINT_DIR})")
        return 0
    folder = Path(args[0] if args else DEFAULT_CHECKPOINT_DIR)
    result = scan_checkpoints(folder)
    print(f"Checkpoints in {safe_text(folder)} (best val_loss first):")
    print(format_checkpoint_table(result.checkpoints, result.skipped))
    return 0 if result.checkpoints else 1


if __name__ == "__main__":
    sys.exit(main())
