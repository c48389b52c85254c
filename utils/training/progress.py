"""What the training loop prints: a plain-text progress bar and one readable line per event.

The bar is tqdm's plain-text one, not ``tqdm.notebook``'s widget: it reads well in Colab,
Jupyter, papermill logs and terminals alike, where a widget prints as ``HBox(...)``
in a headless run. Lines printed while a bar is live leave blank debris in logs, so
routine news (mid-epoch saves) waits until the bar closes; only failures interrupt it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm.std import tqdm

from utils.training.engine.naming import parse_checkpoint_filename, parse_checkpoint_foldername

__all__ = [
    "progress_bar",
    "write",
    "epoch_line",
    "mid_epoch_saves_line",
    "save_failure_message",
    "save_wait_line",
    "mirror_failure_message",
]


def progress_bar(total: int, initial: int, desc: str, enabled: bool = True) -> tqdm | None:
    """A bar over one epoch's steps (``initial`` > 0 after a mid-epoch resume); None when disabled."""
    if not enabled:
        return None
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        file=sys.stdout,
        ncols=100,
        mininterval=1.0,  # few redraws: a notebook stores every one of them
        dynamic_ncols=False,
    )


def write(message: str, bar: tqdm | None = None) -> None:
    """Print ``message`` on its own line, above the bar when one is live."""
    if bar is not None:
        bar.write(message, file=sys.stdout)
    else:
        print(message, flush=True)


def epoch_line(
    epoch: int, epochs: int, global_step: int, metrics: dict, path: Path | None, background: bool = False
) -> str:
    """``Epoch 2/4 | step 24 | train_loss 2.3456 | val_loss 2.3012 | lr 3.00e-04 | saved <file>``.

    ``background``: the file is being written in the background ("saving <file>"); a failure
    is reported when the write ends.
    """
    saved = f" | {'saving' if background else 'saved'} {path.name}" if path is not None else " | NOT SAVED"
    head = f"Epoch {epoch + 1}/{epochs} | step {global_step}"
    if metrics.get("train_loss") is None:
        return head + saved
    return (
        f"{head} | train_loss {metrics['train_loss']:.4f} | val_loss {metrics['val_loss']:.4f} "
        f"| lr {metrics['learning_rate']:.2e}{saved}"
    )


def mid_epoch_saves_line(paths: list[Path]) -> str | None:
    """One line for the mid-epoch checkpoints of an epoch; None when there were none."""
    if not paths:
        return None
    steps = ", ".join(str(_parsed(p).global_step) for p in paths)
    return f"💾 mid-epoch checkpoints at step(s) {steps} (latest: {paths[-1].name})"


def _parsed(path: Path):
    """The numbers in a checkpoint's name: a file, or a sharded checkpoint's folder."""
    return parse_checkpoint_filename(path) or parse_checkpoint_foldername(path)


def save_failure_message(where: str, error: Exception, stops: bool) -> str:
    """The warning for a checkpoint that could not be written: the error, the outcome, the fix."""
    outcome = "Training stops (stop_on_save_error=True)." if stops else "Training continues."
    return (
        f"⚠️  CHECKPOINT NOT SAVED ({where}): {error}\n"
        f"   {outcome} Fix the cause (free disk space, reconnect Google Drive, check "
        "CHECKPOINT_DIR) so that the next save succeeds."
    )


def save_wait_line(seconds: float, previous: str | None) -> str:
    """Said when a save had to wait for the previous background save to finish."""
    return (
        f"⏳ waited {seconds:.1f} s for the previous checkpoint ({previous}) to finish writing: saves come "
        "faster than the disk takes them (raise SAVE_EVERY_STEPS to stop the waits)"
    )


def mirror_failure_message(name: str, folder: Path, reason: str) -> str:
    """The warning for a checkpoint that could not be copied to the mirror folder."""
    return (
        f"⚠️  MIRROR COPY FAILED ({name} -> {folder}): {reason}\n"
        "   Training continues and the local file is complete; the mirror lacks this copy. Check that the "
        "mirror folder is reachable (Google Drive mounted, quota not full)."
    )
