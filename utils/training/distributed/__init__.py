"""Training on several processes (torchrun): DDP or FSDP2, rank-aware saving, sharded checkpoints.

Built on torch.distributed alone: torchrun launches, ``init_process_group`` connects,
DDP / ``fully_shard`` wrap the model, torch.distributed.checkpoint writes and reshards.
The CLI is ``utils.training.launch``; docs/distributed.md explains the commands.

    context.py       DistributedContext: rank, world size, strategy; averaging, saving, printing
    setup.py         process group from torchrun's environment; DDP / fully_shard wrapping
    data.py          RankBatches: each rank's part of every epoch
    rank_zero.py     DDP: rank 0 writes the single-file checkpoint, the others wait
    sharded_save.py  FSDP: the sharded checkpoint folder (DCP), committed by rank 0
    resume.py        any checkpoint into any strategy and number of processes
"""

from utils.training.distributed.context import SINGLE_PROCESS, STRATEGIES, DistributedContext
from utils.training.distributed.data import RankBatches

__all__ = ["SINGLE_PROCESS", "STRATEGIES", "DistributedContext", "RankBatches"]
