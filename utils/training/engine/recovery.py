"""Browse a checkpoint folder without loading weights, and rebuild the training results.

``list_checkpoints`` reads only each file's small metadata record (see
:mod:`metadata`), so listing 20 GPT-2 checkpoints takes milliseconds, and
files that are empty, truncated or not checkpoints are skipped with one line
each instead of crashing the listing.

Terminal view::

    python -m utils.training.engine.recovery [DIR]
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .errors import CheckpointError, NoCheckpointsError
from .format import time_order
from .metadata import read_checkpoint_metadata
from .naming import CHECKPOINT_SUFFIX, is_temporary_file

__all__ = [
    "CheckpointInfo",
    "ScanResult",
    "format_checkpoint_table",
    "latest_checkpoint",
    "list_checkpoints",
    "main",
    "newest",
    "recover_training_results",
    "results_from_scan",
    "scan_checkpoints",
]

DEFAULT_CHECKPOINT_DIR = "./checkpoints"


@dataclass(frozen=True)
class CheckpointInfo:
    """One valid checkpoint, as the listing shows it (no tensors were read)."""

    path: Path
    epoch: int | None
    global_step: int | None
    timestamp: str | None
    train_loss: float | None
    val_loss: float | None
    learning_rate: float | None
    size_bytes: int
    kind: str  # "full" | "legacy" | "bare"
    format_version: int | None
    has_optimizer: bool
    has_rng_state: bool
    # Everything read_checkpoint_metadata returned (history, config, data_state, ...).
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6

    @property
    def history(self) -> list[dict]:
        return list(self.metadata.get("history") or [])

    @property
    def config(self) -> dict:
        return dict(self.metadata.get("config") or {})

    @property
    def time_order(self) -> float:
        """Seconds since the epoch of ``timestamp`` (0.0 when unknown), for ordering ties."""
        return time_order(self.timestamp)


class ScanResult(NamedTuple):
    """The valid checkpoints of a folder (sorted as ``list_checkpoints``) and the skipped files."""

    checkpoints: list[CheckpointInfo]
    skipped: list[tuple[Path, str]]


def scan_checkpoints(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR) -> ScanResult:
    """Read the metadata of every ``*.pt`` file directly in ``checkpoint_dir``.

    Temporary files of unfinished saves are ignored silently; every other file
    that is not a readable checkpoint is recorded in ``skipped`` with a reason.

    Returns:
        ScanResult; both lists are empty for a missing or empty folder.
    """
    folder = Path(checkpoint_dir)
    if not folder.exists():
        return ScanResult([], [])
    if not folder.is_dir():
        return ScanResult([], [(folder, "is a file, not a folder")])
    infos, skipped = [], []
    for path in _candidate_files(folder):
        try:
            infos.append(_info_from(path, read_checkpoint_metadata(path)))
        except (CheckpointError, OSError) as error:
            if not os.path.lexists(path):
                continue  # deleted meanwhile by a concurrent save's retention: nothing to report
            reason = error.problem if isinstance(error, CheckpointError) else error.strerror or str(error)
            skipped.append((path, reason))
    return ScanResult(sorted(infos, key=_listing_order), skipped)


def _candidate_files(folder: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [folder / n for n in names if n.endswith(CHECKPOINT_SUFFIX) and not is_temporary_file(n)]


def _print_skip(line: str) -> None:
    print(line, file=sys.stderr)


def list_checkpoints(
    checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR,
    *,
    on_skip: Callable[[str], None] | None = _print_skip,
) -> list[CheckpointInfo]:
    """The valid checkpoints of a folder, best first, without loading any weights.

    Args:
        checkpoint_dir: the folder; only ``*.pt`` files directly inside it are read.
        on_skip: called with one line ``"Skipped <name>: <reason>"`` per file that
            is not a valid checkpoint (default: print to stderr; None: silent).

    Returns:
        Entries sorted by val_loss (lowest first; ties: higher global_step first),
        then the entries without val_loss, newest first (global_step, then
        timestamp). Empty for a missing or empty folder, or a path that is a file.
    """
    result = scan_checkpoints(checkpoint_dir)
    if on_skip is not None:
        for path, reason in result.skipped:
            on_skip(f"Skipped {path.name}: {reason}")
    return result.checkpoints


def latest_checkpoint(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR) -> CheckpointInfo | None:
    """The checkpoint with the highest global step (ties: newest timestamp); None when there is none."""
    return newest(scan_checkpoints(checkpoint_dir).checkpoints)


def newest(checkpoints: Iterable[CheckpointInfo]) -> CheckpointInfo | None:
    """The entry with the highest global step (ties: newest timestamp, then name).

    Args:
        checkpoints: any entries, e.g. ``ScanResult.checkpoints``.

    Returns:
        The most recent entry, or None when ``checkpoints`` is empty.
    """
    return max(checkpoints, key=_recency, default=None)


def _recency(info: CheckpointInfo) -> tuple[int, float, str]:
    step = info.global_step if info.global_step is not None else -1
    return (step, info.time_order, info.name)


def _listing_order(info: CheckpointInfo) -> tuple:
    """Best val_loss first; without val_loss after them, newest first. The name only breaks exact ties."""
    step, time_order, name = _recency(info)
    if info.val_loss is not None:
        return (0, info.val_loss, -step, -time_order, name)
    return (1, 0.0, -step, -time_order, name)


def _info_from(path: Path, meta: Mapping[str, Any]) -> CheckpointInfo:
    metrics = meta.get("metrics") or {}
    return CheckpointInfo(
        path=path,
        epoch=meta.get("epoch"),
        global_step=meta.get("global_step"),
        timestamp=meta.get("timestamp"),
        train_loss=metrics.get("train_loss"),
        val_loss=metrics.get("val_loss"),
        learning_rate=metrics.get("learning_rate"),
        size_bytes=meta["size_bytes"],
        kind=meta["kind"],
        format_version=meta.get("format_version"),
        has_optimizer=bool(meta.get("has_optimizer")),
        has_rng_state=bool(meta.get("has_rng_state")),
        metadata=dict(meta),
    )


def recover_training_results(checkpoint_dir: str | os.PathLike = DEFAULT_CHECKPOINT_DIR) -> dict[str, Any]:
    """The ``results`` dict of Cell 33, rebuilt from checkpoint metadata alone.

    Returns:
        ``checkpoint_path`` (str, the best checkpoint), ``best_epoch``,
        ``best_val_loss``, ``history`` (per-epoch dicts, from the newest
        checkpoint, or one row per checkpoint when no file stores a history),
        ``epochs``, ``train_losses``, ``val_losses``, ``learning_rates`` (lists
        from that history), ``config``, ``checkpoint_dir``,
        ``latest_checkpoint_path`` and ``checkpoints`` (the listing).

    Raises:
        NoCheckpointsError: the folder holds no valid checkpoint.
    """
    return results_from_scan(scan_checkpoints(checkpoint_dir), checkpoint_dir)


def results_from_scan(scan: ScanResult, checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``results`` dict of :func:`recover_training_results`, from a scan the caller already made.

    Args:
        scan: ``scan_checkpoints(checkpoint_dir)`` (its listing order is kept).
        checkpoint_dir: the folder that was scanned (reported, and named in the error).

    Returns:
        The dict described in :func:`recover_training_results`.

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
        "best_epoch": best.epoch,
        "best_val_loss": best.val_loss,
        "history": history,
        "epochs": [row.get("epoch") for row in history],
        "train_losses": [row.get("train_loss") for row in history],
        "val_losses": [row.get("val_loss") for row in history],
        "learning_rates": [row.get("learning_rate") for row in history],
        "config": best.config or latest.config,
        "checkpoint_dir": str(checkpoint_dir),
        "latest_checkpoint_path": str(latest.path),
        "checkpoints": scan.checkpoints,
    }


def _history_of(latest: CheckpointInfo, checkpoints: list[CheckpointInfo]) -> list[dict]:
    """The newest stored history; for files without one, a row per checkpoint in step order."""
    if latest.history:
        return latest.history
    rows = {}
    for info in sorted(checkpoints, key=_recency):
        key = info.epoch if info.epoch is not None else info.name
        rows[key] = {
            "epoch": info.epoch,
            "global_step": info.global_step,
            "train_loss": info.train_loss,
            "val_loss": info.val_loss,
            "learning_rate": info.learning_rate,
        }
    return list(rows.values())


def _no_checkpoints(folder: Path, skipped: list[tuple[Path, str]]) -> NoCheckpointsError:
    if skipped:
        problem = f"holds no valid checkpoint ({len(skipped)} file(s) skipped: " + "; ".join(
            f"{path.name}: {reason}" for path, reason in skipped[:3]
        )
        problem += ", ...)" if len(skipped) > 3 else ")"
    else:
        problem = "holds no checkpoint" if folder.is_dir() else "does not exist"
    return NoCheckpointsError(
        folder,
        problem,
        expected="checkpoint_epoch####_step######_YYYYmmdd_HHMMSS.pt files written by Cell 32",
        fix="Run the training cell (Cell 32) first, or set the checkpoint folder to where your files are.",
    )


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def format_checkpoint_table(checkpoints: list[CheckpointInfo], skipped: list[tuple[Path, str]] = ()) -> str:
    """A plain-text table of the listing (one row per checkpoint), then one line per skipped file."""
    header = f"{'#':>3}  {'epoch':>5}  {'step':>8}  {'train':>8}  {'val':>8}  {'lr':>9}  {'MB':>9}  "
    header += f"{'timestamp':<19}  name"
    lines = [header, "-" * len(header)]
    for index, info in enumerate(checkpoints):
        lines.append(
            f"{index:>3}  {_number(info.epoch, 'd'):>5}  {_number(info.global_step, 'd'):>8}  "
            f"{_number(info.train_loss, '.4f'):>8}  {_number(info.val_loss, '.4f'):>8}  "
            f"{_number(info.learning_rate, '.2e'):>9}  {info.size_mb:>9.1f}  "
            f"{(info.timestamp or '-')[:19]:<19}  {info.name}"
        )
    if not checkpoints:
        lines.append("(no valid checkpoints)")
    lines.extend(f"Skipped {path.name}: {reason}" for path, reason in skipped)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.training.engine.recovery [DIR]``: print the listing; exit 1 when empty."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(f"usage: python -m utils.training.engine.recovery [DIR]  (default {DEFAULT_CHECKPOINT_DIR})")
        return 0
    folder = Path(args[0] if args else DEFAULT_CHECKPOINT_DIR)
    result = scan_checkpoints(folder)
    print(f"Checkpoints in {folder} (best val_loss first):")
    print(format_checkpoint_table(result.checkpoints, result.skipped))
    return 0 if result.checkpoints else 1


if __name__ == "__main__":
    sys.exit(main())
