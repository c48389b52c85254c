"""This notebook's sharded (FSDP) checkpoint folder, read in one process without a process group.

The layout is in ``sharded_folder``. The listing reads only the JSON record, confirmed
against the folder (the files' sizes, ``.metadata``'s CRC-32; never a shard); the loader
reads the ``model`` group of the DCP shards in this process (DCP reassembles every rank's
shards); resume gets the rest of the checkpoint in the single-file format
(``open_training_state``), so the notebook's ``RESUME`` continues a run that started under
torchrun, in one process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import format as fmt
from ..errors import CorruptCheckpointError
from ..naming import parse_checkpoint_foldername
from ..record import CheckpointRecord, clean_int
from ..sharded_folder import (
    DCP_METADATA_NAME,
    LAYOUT,
    RECORD_NAME,
    TRAIN_STATE_NAME,
    folder_size,
    rank_parts,
    read_folder_record,
    read_part,
    world_size_of,
)
from ..text import safe_text
from ..untrusted import folder_entries, open_error
from .base import Probe
from .dcp import DcpSource
from .records import record_from_fields

__all__ = [
    "ShardedSource",
    "folder_probe",
    "indexed_optimizer_state",
    "read_sharded_record",
    "read_sharded_training_state",
]


class ShardedSource(DcpSource):
    """A folder written by the sharded saver: our record, DCP shards, per-rank states."""

    kind = LAYOUT

    def claims(self, probe: Probe) -> bool:
        # Named like ours but without the record: a save that never finished (read_record says so),
        # never mistaken for a foreign DCP folder with weights and no counters.
        ours = RECORD_NAME in probe.entries or parse_checkpoint_foldername(probe.path.name) is not None
        return probe.is_dir and DCP_METADATA_NAME in probe.entries and ours

    def read_record(self, probe: Probe) -> CheckpointRecord:
        raw = read_folder_record(probe.path)
        world = world_size_of(raw)
        facts = {
            "has_optimizer": raw.get("has_optimizer") is True,
            "has_rng_state": raw.get("has_rng_state") is True,
            "tensor_count": clean_int(raw.get("tensor_count")),
        }
        notes = (f"written by {world} process(es) with FSDP",) if world else ()
        record = record_from_fields(probe, raw, kind=self.kind, source="record", facts=facts, notes=notes)
        return dataclasses.replace(record, size_bytes=folder_size(probe.path))

    def open_training_state(self, probe: Probe) -> Mapping[str, Any]:
        """Everything but the weights (``open_weights`` reads those), in the single-file format.

        The optimizer state is numbered as ``optimizer.state_dict()`` numbers it; the random
        generators and data position are rank 0's, and ``rank_states`` lists every rank's.

        Raises:
            CorruptCheckpointError: a part is missing or damaged (the message names it).
            UnsafeCheckpointError: a part would need arbitrary unpickling.
        """
        from ..dcp_index import read_dcp_metadata
        from ..dcp_reading import load_dcp

        folder = probe.path
        world = world_size_of(read_folder_record(folder))  # no record: an unfinished save, refused here
        if world is None:
            raise CorruptCheckpointError(folder, f"{RECORD_NAME} does not say how many processes wrote it")
        metadata = read_dcp_metadata(folder)
        nested = _nest(metadata, skip="model")
        load_dcp(folder, nested, metadata=metadata, no_dist=True, partial=True)
        checkpoint = dict(read_part(folder, TRAIN_STATE_NAME))
        ranks = rank_parts(folder, world)
        optimizer = nested.get("optimizer")
        checkpoint[fmt.OPTIMIZER_STATE_KEY] = indexed_optimizer_state(optimizer) if optimizer else None
        checkpoint[fmt.RNG_STATE_KEY] = ranks[0].get("rng_state")
        checkpoint[fmt.DATA_STATE_KEY] = ranks[0].get("data_state")
        checkpoint["rank_states"] = ranks
        return checkpoint


def folder_probe(folder: str | os.PathLike) -> Probe:
    """A probe of a folder (its path and file names), as detection gives it to a source."""
    folder = Path(folder)
    try:
        entries = tuple(folder_entries(folder))
    except OSError as error:
        raise open_error(folder, error) from error
    return Probe(path=folder, is_dir=True, entries=entries)


def read_sharded_record(folder: str | os.PathLike) -> CheckpointRecord:
    """The record of a sharded checkpoint folder (its JSON record alone; retention reads it on every save).

    Raises:
        CheckpointNotFoundError, CorruptCheckpointError: no such folder, or no (readable) record.
    """
    return ShardedSource().read_record(folder_probe(folder))


def read_sharded_training_state(folder: str | os.PathLike) -> Mapping[str, Any]:
    """``ShardedSource().open_training_state`` of a folder: the state a resume needs, in one process.

    Raises:
        CheckpointNotFoundError, CorruptCheckpointError, UnsafeCheckpointError: see the source.
    """
    return ShardedSource().open_training_state(folder_probe(folder))


def _nest(metadata, skip: str | None = None) -> dict[str, Any]:
    """Empty tensors (and None for other values) in the nesting DCP flattened, ready for ``load_dcp``.

    ``read_dcp_metadata`` checked the index first: every list index in a path is below the
    number of entries, and every tensor's size is backed by the bytes its shards hold, so
    nothing here grows or allocates more than the folder holds.

    Args:
        skip: a top-level group left out (``"model"``: the weights are read by ``open_weights``).
    """
    paths = metadata.planner_data if isinstance(metadata.planner_data, dict) else {}
    nested: dict[str, Any] = {}
    for key, entry in metadata.state_dict_metadata.items():
        path = paths.get(key, (key,))
        if path[0] == skip:
            continue
        size = getattr(entry, "size", None)
        value = torch.empty(tuple(size), dtype=entry.properties.dtype) if size is not None else None
        try:
            _put(nested, path, value)
        except _Conflict as error:
            raise CorruptCheckpointError(
                None, f"DCP's index places {safe_text(key, 120)} where another value is ({error})"
            ) from None
    return nested


class _Conflict(Exception):
    """Two paths of the index disagree on what a container is (a list, a dict, a value)."""


def _put(container: Any, path: tuple, value: Any) -> None:
    """Set ``container[path[0]][path[1]]... = value``, creating dicts (str keys) and lists (int keys)."""
    for step, following in zip(path, path[1:], strict=False):
        fresh: Any = [] if type(following) is int else {}
        current = _slot(container, step)
        if current is None:
            container[step] = current = fresh
        elif not isinstance(current, (list, dict)):
            raise _Conflict(f"a value where a container is expected at {safe_text(step, 80)}")
        container = current
    _slot(container, path[-1])
    container[path[-1]] = value


def _slot(container: Any, step: Any) -> Any:
    """What ``container[step]`` holds (None when nothing), a list grown to hold ``step``."""
    if isinstance(container, list) and type(step) is int:
        container.extend([None] * (step + 1 - len(container)))  # the index is bounded by read_dcp_metadata
        return container[step]
    if isinstance(container, dict) and type(step) is str:
        return container.get(step)
    raise _Conflict(f"a {type(step).__name__} key into a {type(container).__name__}")


def indexed_optimizer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """An optimizer state keyed by parameter name (DCP's form) as ``optimizer.state_dict()`` keys it.

    ``optimizer.state_dict()`` numbers the parameters in the order its groups list them;
    the named form lists the names in that same order, so the numbering is recovered
    without the model.

    Raises:
        CorruptCheckpointError: the state is not in the named form.
    """
    groups, named = state.get("param_groups"), state.get("state") or {}
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        raise CorruptCheckpointError(None, "the optimizer state has no parameter groups")
    index: dict[str, int] = {}
    indexed_groups = []
    for group in groups:
        numbers = [index.setdefault(str(name), len(index)) for name in group.get("params", [])]
        indexed_groups.append({**group, "params": numbers})
    return {
        "state": {index[name]: dict(value) for name, value in named.items() if name in index},
        "param_groups": indexed_groups,
    }
