"""The one object that makes the training loop rank-aware; the default changes nothing.

``train(..., distributed=context)`` asks it four things: average this loss over the
ranks, describe the data position (which world size it belongs to), save this
checkpoint (rank 0's file for DDP, every rank's shards for FSDP), and whether this
process prints. :data:`SINGLE_PROCESS` answers as the one-process notebook always did:
the loss as it is, the data position as it is, ``save_checkpoint``, print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from utils.training.engine.checkpoint import save_checkpoint

__all__ = ["STRATEGIES", "DistributedContext", "SINGLE_PROCESS"]

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is in the run, and how it trains and saves.

    Args:
        rank, world_size, local_rank: torchrun's RANK, WORLD_SIZE and LOCAL_RANK.
        strategy: "ddp" (replicated model, rank 0 writes one file) or "fsdp" (sharded
            model, every rank writes its shards into one folder); "none" for one process.
        device: this process's device.
        has_group: a process group is running (torchrun, or FSDP in one process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "none"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    has_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def should_print(self) -> bool:
        """Only rank 0 prints progress, panels and reports."""
        return self.is_main

    def average(self, value: float) -> float:
        """``value`` averaged over the ranks (all_reduce); unchanged in one process."""
        if self.world_size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total.item()) / self.world_size

    def describe_data(self, data_state: dict[str, Any]) -> dict[str, Any]:
        """The data position a checkpoint stores; with a process group, also the world size it belongs to."""
        return {**data_state, "world_size": self.world_size} if self.has_group else data_state

    def barrier(self) -> None:
        if self.has_group:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if not self.has_group:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.has_group:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def save_checkpoint(
        self, checkpoint_dir: str | Path, model: Any, optimizer: Any = None, **parts: Any
    ) -> Path:
        """Save as ``engine.checkpoint.save_checkpoint`` does (same arguments), on every rank.

        Returns:
            The checkpoint's path (the same on every rank).

        Raises:
            CheckpointSaveError: on every rank, when the save failed on any.
        """
        if self.strategy == "fsdp" and self.has_group:
            from .sharded_save import save_sharded_checkpoint

            return save_sharded_checkpoint(self, checkpoint_dir, model, optimizer, **parts)
        if self.has_group:
            from .rank_zero import save_on_rank_zero

            return save_on_rank_zero(self, checkpoint_dir, model, optimizer, **parts)
        return save_checkpoint(checkpoint_dir, model, optimizer, **parts)


SINGLE_PROCESS = DistributedContext()
