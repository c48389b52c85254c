"""Resume a run under torchrun: any checkpoint (a DDP file or an FSDP folder) into any strategy.

* file -> DDP, or one process: ``restore_training_state`` on every rank (it reads the file);
* FSDP folder -> DDP, or one process: the same; DCP reads every rank's shards into full tensors;
* FSDP folder -> FSDP: DCP reads into this rank's shards, resharding when the number of
  processes changed (``dcp.load`` of ``get_state_dict``, then ``set_state_dict``);
* file -> FSDP: every rank reads the file and ``set_state_dict`` with a full state dict
  keeps its own shards.

Then each rank restores its own random generators (same number of processes), and the
data position is carried over to the new split of the epoch (another number). The
report (``ResumeState.render()``) says what could not be exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from utils.training.engine import format as fmt
from utils.training.engine.dcp_index import read_dcp_metadata, tensor_entries
from utils.training.engine.dcp_reading import load_dcp
from utils.training.engine.errors import NotACheckpointError, ResumeError
from utils.training.engine.prefixes import strip_wrapper_prefixes, unwrap_model
from utils.training.engine.record import clean_run_id
from utils.training.engine.sharded_folder import (
    TRAIN_STATE_NAME,
    rank_parts,
    read_folder_record,
    read_part,
    world_size_of,
)
from utils.training.engine.sources import open_checkpoint
from utils.training.resume import ResumeState, restore_run_parts, restore_training_state
from utils.training.rng import restore_rng_state

from .context import DistributedContext
from .rank_zero import RANKS_KEY

__all__ = ["named_optimizer_state", "restore_for_ranks"]


def restore_for_ranks(
    context: DistributedContext,
    source: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    batches: Any,
) -> ResumeState:
    """Restore ``source`` into this rank's model, optimizer, scheduler, scaler and generators.

    Args:
        context: this process's DistributedContext.
        source: a checkpoint file or a sharded checkpoint folder.
        model: wrapped as the strategy trains it (DDP, or after ``fully_shard``).
        batches: this rank's batches (their ``world_size`` and sizes place the data position).

    Returns:
        The ResumeState for ``train``; its report names what is not exact.

    Raises:
        CheckpointError subclasses: the checkpoint cannot be read, or does not fit.
    """
    source = Path(source)
    sharded = context.strategy == "fsdp" and context.has_group
    if sharded and source.is_dir():
        state, rank_states = _folder_into_shards(context, source, model, optimizer, scheduler, scaler)
    elif sharded:
        state, rank_states = _file_into_shards(source, model, optimizer, scheduler, scaler)
    else:
        state = restore_training_state(source, unwrap_model(model), optimizer, scheduler, scaler)
        rank_states = _rank_generators(source)
    _restore_own_generators(context, state, rank_states)
    _carry_position(context, state, batches)
    return state


def _folder_into_shards(context, folder: Path, model, optimizer, scheduler, scaler):
    """DCP reads this rank's part of every tensor (from however many ranks wrote them)."""
    metadata = read_dcp_metadata(folder)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    _check_names(folder, model_state, tensor_entries(metadata))
    record = read_folder_record(folder)  # confirmed against the folder; the parts read before any weight
    written = world_size_of(record) or 1
    shared = read_part(folder, TRAIN_STATE_NAME)
    ranks = [part.get("rng_state") for part in rank_parts(folder, written)]
    wanted = {"model": model_state, "optimizer": optimizer_state}
    load_dcp(folder, wanted, metadata=metadata)
    obj = {**shared, fmt.RNG_STATE_KEY: ranks[0]}
    run_id = clean_run_id(record.get(fmt.RUN_ID_KEY))
    state = ResumeState(checkpoint_path=folder, kind="sharded", run_id=run_id)
    restore_run_parts(folder, obj, state, optimizer, scheduler, scaler)
    set_state_dict(model, optimizer, model_state_dict=wanted["model"], optim_state_dict=wanted["optimizer"])
    state.restored[:0] = [f"model weights and optimizer (DCP: {written} -> {context.world_size} process(es))"]
    return state, ranks


def _file_into_shards(path: Path, model, optimizer, scheduler, scaler):
    """Every rank reads the single file; ``set_state_dict`` keeps this rank's shards of the full state."""
    with open_checkpoint(path) as checkpoint:
        obj = checkpoint.training_state()
        if obj is None:
            raise NotACheckpointError(
                path, "holds no training state (a weights-only file)",
                expected="a checkpoint written by the training loop", fix="resume from another checkpoint",
            )  # fmt: skip
        kind = checkpoint.kind
        with checkpoint.weights() as stored:
            weights = {name: stored.tensor(name) for name in stored}
        # Copied out of the file's memory map (closed below): set_state_dict may keep a tensor it is
        # given as the shard itself (one process), and training must never write into the file's pages.
        weights, obj = _copied(weights), _copied(dict(obj))
    model_state, _ = get_state_dict(model, optimizer)
    weights, _ = strip_wrapper_prefixes(weights, model_keys=model_state)
    _check_names(path, model_state, weights)  # before anything changes
    state = ResumeState(checkpoint_path=path, kind=kind, run_id=clean_run_id(obj.get(fmt.RUN_ID_KEY)))
    restore_run_parts(path, obj, state, optimizer, scheduler, scaler)
    saved = obj.get(fmt.OPTIMIZER_STATE_KEY)
    named = named_optimizer_state(saved, optimizer, model) if saved else {}
    options = StateDictOptions(full_state_dict=True)
    set_state_dict(model, optimizer, model_state_dict=weights, optim_state_dict=named, options=options)
    state.restored[:0] = [
        "model weights" + (" and optimizer" if named else "") + " (full state, sharded here)"
    ]
    if not named:
        state.missing.append("optimizer state: not in the file; AdamW's moments restart from zero")
    return state, (obj.get(fmt.RNG_STATE_KEY) or {}).get(RANKS_KEY)


def _copied(value: Any) -> Any:
    """``value`` with every tensor copied (out of a file's memory map)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(item) for item in value)
    return value


def _check_names(path: Path, model_state: dict[str, Any], stored: dict[str, Any]) -> None:
    """Refuse, before anything changes, a checkpoint whose weights are not this model's."""
    names = {key.removeprefix("model."): value for key, value in stored.items()}
    missing = [key for key in model_state if key not in names]
    wrong = [
        key
        for key, tensor in model_state.items()
        if key in names and _shape(names[key]) != tuple(tensor.shape)
    ]
    if missing or wrong:
        shown = ", ".join((missing + wrong)[:4])
        raise ResumeError(
            path, f"its weights do not fit this model ({len(missing)} missing, {len(wrong)} of another shape: {shown})",
            expected="a checkpoint of the same model preset", fix="use --preset as in the original run",
        )  # fmt: skip


def _shape(stored: Any) -> tuple[int, ...]:
    """A stored tensor's shape, or a DCP index entry's (``TensorStorageMetadata.size``)."""
    return tuple(stored.shape if isinstance(stored, torch.Tensor) else stored.size)


def _rank_generators(source: Path) -> list[Any] | None:
    """Every rank's generator states stored with the checkpoint (None when it has none)."""
    if source.is_dir():
        world = world_size_of(read_folder_record(source)) or 0
        return [part.get("rng_state") for part in rank_parts(source, world)]
    with open_checkpoint(source) as checkpoint:
        rng = (checkpoint.training_state() or {}).get(fmt.RNG_STATE_KEY)
        return _copied(rng.get(RANKS_KEY)) if isinstance(rng, dict) else None  # out of the closing map


def _restore_own_generators(context: DistributedContext, state: ResumeState, ranks: list[Any] | None) -> None:
    """With as many processes as before, each rank continues its own random streams."""
    if context.world_size == 1 and not ranks:
        return
    if ranks and len(ranks) == context.world_size and ranks[context.rank] is not None:
        restore_rng_state(ranks[context.rank])
        state.restored.append(f"random generators of each of the {context.world_size} processes")
        return
    written = len(ranks) if ranks else 1
    state.missing.append(
        f"random generators per process: the checkpoint holds {written} process(es)' streams, this run has "
        f"{context.world_size}; every process continues from rank 0's (dropout differs from the original run)"
    )


def _carry_position(context: DistributedContext, state: ResumeState, batches: Any) -> None:
    """Place a mid-epoch position of N processes in this run's split of the epoch (M processes)."""
    written = (state.data_state or {}).get("world_size", 1)
    if written == context.world_size:
        return
    state.missing.append(
        f"data order per process: written by {written} process(es), resumed with {context.world_size}; each "
        "process now reads another part of every epoch"
    )
    if state.batch_in_epoch:
        seen = state.batch_in_epoch * batches.batch_size * written  # windows of this epoch already trained on
        state.batch_in_epoch = min(
            seen // (batches.batch_size * context.world_size), batches.batches_per_epoch
        )
        state.notes.append(
            f"mid-epoch position: {seen} windows of this epoch were trained on; continuing at batch "
            f"{state.batch_in_epoch + 1} of each process (windows that do not divide evenly are repeated or skipped)"
        )


def named_optimizer_state(saved: dict[str, Any], optimizer: torch.optim.Optimizer, model: torch.nn.Module):
    """``optimizer.state_dict()``'s form (parameters numbered) keyed by parameter name, as DCP's APIs take it.

    The numbers follow the order of ``optimizer.param_groups``; the names are the model's
    (``named_parameters``), which ``fully_shard`` and DDP (after unwrapping) keep.
    """
    names = {id(param): name for name, param in unwrap_model(model).named_parameters()}
    order = [names[id(param)] for group in optimizer.param_groups for param in group["params"]]
    groups = saved.get("param_groups") or []
    if len([n for g in groups for n in g.get("params", [])]) != len(order):
        raise ResumeError(
            None, "the optimizer state does not fit this optimizer (another number of parameters)"
        )
    state = {order[int(index)]: value for index, value in (saved.get("state") or {}).items()}
    named_groups = [{**group, "params": [order[int(i)] for i in group["params"]]} for group in groups]
    return {"state": state, "param_groups": named_groups}
