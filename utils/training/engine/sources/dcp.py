"""Any ``torch.distributed.checkpoint`` (DCP) folder: ``.metadata`` plus ``*.distcp`` shards.

Read in one process without a process group. DCP flattens nested state dicts into dotted
names: ``dcp.save(model.state_dict(), ...)`` stores ``transformer.wte.weight``, while
``dcp.save({"model": ..., "optimizer": ...})`` (this notebook's sharded saver, torchtitan,
PyTorch's tutorials with ``{"app": ...}``) stores ``model.transformer.wte.weight``. The
weights are the tensors under a ``model`` group when there is one, else every tensor
outside an optimizer group; ``module.`` / ``_orig_mod.`` prefixes are left to the loader,
which strips them for every kind of checkpoint.

torch.distributed.checkpoint is imported only when a DCP folder is read (it takes
seconds), never by the listing of a folder without one. The record comes from ``.metadata`` alone (names, shapes, dtypes: no shard is read);
each weight is read by DCP itself when the loader asks for it (an ignored one never is), and
a tensor stored under two names (a tied ``lm_head.weight``) is one tensor (``dcp_ties``).
"""

from __future__ import annotations

import torch

from ..record import CheckpointRecord
from ..sharded_folder import DCP_METADATA_NAME, folder_size
from .base import Probe, Source, TensorSpec, WeightSet

__all__ = ["DcpSource", "weight_names"]

# Groups (first dotted parts) that hold the model's weights, most specific first.
_MODEL_GROUPS = ("app.model.", "model.")
_OPTIMIZER_GROUPS = ("optimizer.", "optim.", "app.optimizer.", "app.optim.")


def weight_names(keys: list[str]) -> tuple[dict[str, str], str | None]:
    """The model weights among DCP's tensor names: our name -> DCP name, and the group removed.

    Args:
        keys: the names of the tensors in the checkpoint, in its order.

    Returns:
        The mapping, and the prefix removed (``"model."``) or None for a bare state dict.
    """
    for group in _MODEL_GROUPS:
        inside = [key for key in keys if key.startswith(group)]
        if inside:
            return {key[len(group) :]: key for key in inside}, group
    return {key: key for key in keys if not key.startswith(_OPTIMIZER_GROUPS)}, None


class DcpSource(Source):
    """A DCP folder written by any code (weights only; no training state)."""

    kind = "dcp"

    def claims(self, probe: Probe) -> bool:
        # DCP's index alone marks the folder: one whose shards are gone is still DCP's, and reading
        # it says which shard file is missing (rather than "not a checkpoint").
        return probe.is_dir and DCP_METADATA_NAME in probe.entries

    def _metadata(self, probe: Probe):
        """DCP's index, read safely once per probe (the listing and the loader share it)."""
        from ..dcp_index import read_dcp_metadata  # imports torch.distributed.checkpoint: seconds

        return probe.cached("dcp-metadata", lambda: read_dcp_metadata(probe.path))

    def read_record(self, probe: Probe) -> CheckpointRecord:
        from ..dcp_index import tensor_entries

        entries = tensor_entries(self._metadata(probe))
        names, group = weight_names(list(entries))
        notes = [f"the weights are the tensors under {group[:-1]!r}"] if group else []
        optimizer = any(key.startswith(_OPTIMIZER_GROUPS) for key in entries)
        return CheckpointRecord(
            path=probe.path,
            kind=self.kind,
            has_optimizer=optimizer,
            tensor_count=len(names),
            size_bytes=folder_size(probe.path),
            source="dcp-metadata",
            link_target=probe.link_target,
            notes=tuple(notes + ["epoch, step and metrics are not stored in a DCP folder"]),
        )

    def open_weights(self, probe: Probe) -> WeightSet:
        from ..dcp_index import tensor_entries
        from ..dcp_reading import load_dcp
        from ..dcp_ties import shared_storage_keys

        metadata = self._metadata(probe)
        entries = tensor_entries(metadata)
        names, group = weight_names(list(entries))
        specs = {
            ours: TensorSpec(tuple(int(s) for s in entries[key].size), entries[key].properties.dtype)
            for ours, key in names.items()
        }

        def read(name: str) -> torch.Tensor:
            # One tensor per call: only what the loader copies is allocated (the index's sizes were
            # checked against the bytes the shards hold), never an ignored tensor.
            wanted = {names[name]: torch.empty(specs[name].shape, dtype=specs[name].dtype)}
            load_dcp(probe.path, wanted, metadata=metadata, no_dist=True)
            return wanted[names[name]]

        notes = (f"removed the {group!r} group from the DCP names",) if group else ()
        tied = shared_storage_keys(probe.path, metadata, names)
        return WeightSet(specs, read, storage_keys=tied, notes=notes)
