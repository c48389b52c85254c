"""Which checkpoints to keep: the best K by validation loss plus the latest N by step.

A pure function over small records, so that every rule is unit-tested
without files. The rules that protect the user:

* the newest checkpoint (highest step, then newest time) is always kept;
* the best checkpoint (lowest val_loss) is kept whenever ``keep_best >= 1``
  (the default), so rotation never deletes it (the transformers#15089 bug);
* paths in ``protect`` (the file just written) are always kept;
* only the candidates given are ever considered: the caller passes only
  valid checkpoints written by this engine, never unrelated files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RetentionCandidate", "RetentionPolicy", "select_for_deletion"]


@dataclass(frozen=True)
class RetentionPolicy:
    """How many checkpoints a folder keeps after each save.

    Args:
        keep_best: how many of the lowest-val_loss checkpoints to keep (0 turns
            off best-keeping; the default 1 keeps the best one forever).
        keep_last: how many of the newest checkpoints (by global step) to keep; at least 1.

    The default (1 best + 2 latest) keeps at most 3 files: about 4.5 GB for
    GPT-2 small with optimizer state, which fits a Colab disk or free Drive.
    """

    keep_best: int = 1
    keep_last: int = 2

    def __post_init__(self) -> None:
        for name, minimum in (("keep_best", 0), ("keep_last", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"RetentionPolicy({name}={value!r}): expected an integer >= {minimum}. "
                    "Use retention=None to keep every checkpoint."
                )


@dataclass(frozen=True)
class RetentionCandidate:
    """One deletable checkpoint (a file, or a sharded checkpoint's folder): where it is and what ranks it."""

    path: Path
    global_step: int
    val_loss: float | None = None
    time_order: float = 0.0  # seconds since the epoch of its timestamp; breaks step ties


def select_for_deletion(
    candidates: Sequence[RetentionCandidate],
    policy: RetentionPolicy,
    protect: Iterable[Path] = (),
) -> list[Path]:
    """The paths to delete so that ``policy`` holds.

    Args:
        candidates: the folder's valid checkpoints written by this engine.
        policy: how many best and latest checkpoints to keep.
        protect: paths that must survive whatever their rank (e.g. the new file).

    Returns:
        Paths to delete, oldest first; never the newest, the best (when
        ``keep_best >= 1``) or a protected one.
    """
    keep = {Path(p) for p in protect}
    newest_first = sorted(candidates, key=lambda c: (c.global_step, c.time_order), reverse=True)
    keep.update(c.path for c in newest_first[: policy.keep_last])
    scored = [c for c in candidates if c.val_loss is not None]
    best_first = sorted(scored, key=lambda c: (c.val_loss, -c.global_step, -c.time_order))
    keep.update(c.path for c in best_first[: policy.keep_best])
    return [c.path for c in reversed(newest_first) if c.path not in keep]
