"""Start and stop the process group from torchrun's environment, and wrap the model.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
for every process it starts (on one machine or, with its rendezvous flags, on several);
``init_process_group`` reads them. The backend follows the device: NCCL on CUDA, gloo
on the CPU. Without torchrun, DDP needs no group (one process trains as the notebook
does), while FSDP gets a group of one (a local store), so that the same sharded code and
checkpoint folders serve one process too.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from utils.training.engine.prefixes import unwrap_model
from utils.training.precision import resolve_device

from .context import STRATEGIES, DistributedContext

__all__ = ["full_state_dict", "launched_by_torchrun", "start", "stop", "wrap_model"]

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun started."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def start(strategy: str, device: str = "auto") -> DistributedContext:
    """Join the run's process group (when there is one) and describe this process.

    Args:
        strategy: "ddp" or "fsdp".
        device: the device setting ("auto", "cpu", "cuda"); under torchrun on CUDA each
            process takes the GPU of its ``LOCAL_RANK``.

    Returns:
        The context to pass to ``train(..., distributed=...)``.

    Raises:
        ValueError: an unknown strategy.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    torchrun = launched_by_torchrun()
    rank, world, local = (int(os.environ[name]) for name in _TORCHRUN_VARIABLES) if torchrun else (0, 1, 0)
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
    if not torchrun and strategy == "ddp":
        return DistributedContext(strategy=strategy, device=chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    if torchrun:
        dist.init_process_group(backend, device_id=chosen if chosen.type == "cuda" else None)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return DistributedContext(rank, world, local, strategy, chosen, has_group=True)


def stop(context: DistributedContext) -> None:
    """Leave the process group (every rank calls it at the end)."""
    if context.has_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, context: DistributedContext) -> torch.nn.Module:
    """The model as the strategy trains it: DDP-wrapped, or sharded in place by ``fully_shard``.

    FSDP shards each transformer block, then the rest (embeddings, final norm, head) at the
    root, PyTorch's recommended layout; the model keeps its class and parameter names.
    """
    model.to(context.device)
    if context.strategy == "fsdp" and context.has_group:
        for block in getattr(getattr(model, "transformer", None), "h", []):
            fully_shard(block)
        fully_shard(model)
        return model
    if context.strategy == "ddp" and context.has_group:
        ids = [context.device.index] if context.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    return model


def full_state_dict(model: torch.nn.Module, context: DistributedContext) -> dict[str, torch.Tensor] | None:
    """A copy of the model's complete weights, on the CPU, on rank 0 (None on the others).

    Under FSDP every rank must call it (the shards are gathered to rank 0).
    """
    if context.strategy == "fsdp" and context.has_group:
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = unwrap_model(model).state_dict()
    # A copy: with one process the "gathered" tensors are the parameters themselves.
    return (
        {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}
        if context.is_main
        else None
    )
