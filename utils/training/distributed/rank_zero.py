"""DDP's checkpoint: rank 0 writes the single file, every other rank waits for the outcome.

Under DDP every rank holds the same weights and optimizer state, so one file holds the
run: rank 0 writes it through ``save_checkpoint`` (atomic, retention, JSON record).
Each rank's random generators are gathered first and stored under ``rng_state["ranks"]``
(rank 0's stay at the top level, where a one-process resume looks), so a resume with
the same number of processes restores every rank's dropout stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.errors import CheckpointSaveError

__all__ = ["RANKS_KEY", "save_on_rank_zero"]

RANKS_KEY = "ranks"  # rng_state[RANKS_KEY][r]: rank r's generators


def save_on_rank_zero(
    context, checkpoint_dir: str | Path, model: Any, optimizer: Any = None, **parts: Any
) -> Path:
    """``save_checkpoint`` on rank 0; the others wait for its outcome (the broadcast is the barrier).

    Args:
        context: the DistributedContext of this process.
        checkpoint_dir, model, optimizer, parts: as for ``save_checkpoint``.

    Returns:
        The file's path, on every rank.

    Raises:
        CheckpointSaveError: on every rank, when rank 0's save failed.
    """
    rng_state = parts.pop("rng_state", None)
    every_rank = context.gather(rng_state)  # collective: every rank takes part
    outcome: tuple[str, Any] | None = None
    if context.is_main:
        if rng_state is not None:
            rng_state = {**rng_state, RANKS_KEY: every_rank}
        try:
            outcome = (
                "saved",
                str(save_checkpoint(checkpoint_dir, model, optimizer, rng_state=rng_state, **parts)),
            )
        except CheckpointSaveError as error:
            outcome = ("failed", error)
        except Exception as error:  # the other ranks must not wait forever: they fail the same way
            outcome = ("crashed", f"{type(error).__name__}: {error}")
    kind, value = context.broadcast(outcome)
    if kind == "failed":
        raise value
    if kind == "crashed":
        raise RuntimeError(f"rank 0 could not save the checkpoint: {value}")
    return Path(value)
