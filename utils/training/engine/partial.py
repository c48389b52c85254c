"""Partial loading (``strict=False``): which tensors of a checkpoint fit a model, and how.

For transfer learning a checkpoint often fits a model only in part: two layers of
weights into a three-layer model, a vocabulary of 256 into one of 300. PyTorch's
``load_state_dict(strict=False)`` then silently skips every problem (and still raises
on a shape mismatch after copying the tensors before it). Here the plan is made first,
from names and shapes alone:

* ``loaded``: name and shape fit -> copied whole;
* ``resized``: an embedding or output matrix that differs only in its number of rows
  (a vocabulary or context change) -> the overlapping rows are copied, the rest kept;
* ``kept``: the model has it, the file does not -> left as it is;
* ``ignored``: the file has it, the model does not -> not read;
* ``mismatched``: any other shape or an unusable dtype -> left as it is.

The loader then copies exactly the planned parts; nothing is touched before the plan
is complete, so a failure still changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from .state_dict_diff import StateDictDiff, collapse_names

__all__ = ["PartialPlan", "plan_partial_load", "resizable_names"]


@dataclass(frozen=True)
class PartialPlan:
    """What a ``strict=False`` load does with each tensor (model names)."""

    loaded: list[str] = field(default_factory=list)
    resized: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, str]] = field(default_factory=list)  # (name, checkpoint, model)
    loaded_params: int = 0  # parameter elements whose values came from the file
    total_params: int = 0
    model_names: tuple[str, ...] = field(default=(), repr=False)
    checkpoint_names: tuple[str, ...] = field(default=(), repr=False)

    @property
    def share_from_file(self) -> float:
        """The fraction of the model's parameter elements that came from the file."""
        return self.loaded_params / self.total_params if self.total_params else 0.0

    def sections(self) -> list[tuple[str, list[str]]]:
        """(title, collapsed lines) for each non-empty group, in the order a user reads them."""
        resized = [f"{name}: rows {old[0]:,} -> {new[0]:,}" for name, old, new in self.resized]
        mismatched = [
            f"{name}: checkpoint {ours} vs model {theirs}" for name, ours, theirs in self.mismatched
        ]
        groups = [
            ("Loaded from the file", collapse_names(self.loaded, self.model_names)),
            ("Resized (overlapping rows copied)", resized),
            ("Kept (the file lacks them)", collapse_names(self.kept, self.model_names)),
            ("Ignored (the model lacks them)", collapse_names(self.ignored, self.checkpoint_names)),
            ("Shape mismatch (left as they are)", mismatched),
        ]
        return [(title, lines) for title, lines in groups if lines]


def resizable_names(model: torch.nn.Module) -> set[str]:
    """Weights whose rows are vocabulary or positions: ``nn.Embedding`` weights and output
    projections tied to one (``lm_head.weight`` shares ``wte``'s tensor)."""
    embeddings = {
        f"{name}.weight" if name else "weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Embedding)
    }
    tied = {id(weight) for weight in embeddings.values()}
    names = set(embeddings)
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in tied:
            names.add(name)
    return names


def plan_partial_load(
    diff: StateDictDiff,
    specs: Mapping[str, object],
    model_sd: Mapping[str, torch.Tensor],
    resizable: set[str],
    parameter_names: set[str],
) -> PartialPlan:
    """The plan for a ``strict=False`` load, from the strict comparison's findings.

    Args:
        diff: ``compare_state_dicts`` of the checkpoint (model names) and the model.
        specs: the checkpoint's tensor specs (shape, dtype), model names.
        model_sd: the unwrapped model's ``state_dict()``.
        resizable: names whose first dimension may differ (see :func:`resizable_names`).
        parameter_names: the model's parameters (buffers do not count towards the share).
    """
    shape_of = {name: (ours, theirs) for name, ours, theirs in diff.shape_mismatches}
    bad_dtype = {name: (ours, theirs) for name, ours, theirs in diff.dtype_mismatches}
    loaded, resized, mismatched = [], [], []
    for name in model_sd:
        if name not in specs:
            continue
        if name in bad_dtype:
            mismatched.append((name, *bad_dtype[name]))
        elif name in shape_of:
            ours, theirs = shape_of[name]
            if name in resizable and len(ours) == len(theirs) == 2 and ours[1:] == theirs[1:]:
                resized.append((name, ours, theirs))
            else:
                mismatched.append((name, str(list(ours)), str(list(theirs))))
        else:
            loaded.append(name)
    rows_from_file = {name: min(ours[0], theirs[0]) for name, ours, theirs in resized}
    loaded_set = set(loaded)
    counted: set[int] = set()  # a tied tensor counts once
    total = from_file = 0
    for name, tensor in model_sd.items():
        if name not in parameter_names or tensor.data_ptr() in counted:
            continue
        counted.add(tensor.data_ptr())
        total += tensor.numel()
        if name in loaded_set:
            from_file += tensor.numel()
        elif name in rows_from_file:
            from_file += rows_from_file[name] * tensor[0].numel()
    return PartialPlan(
        loaded=loaded,
        resized=resized,
        kept=list(diff.missing),
        ignored=list(diff.unexpected),
        mismatched=mismatched,
        loaded_params=min(from_file, total),
        total_params=total,
        model_names=tuple(model_sd),
        checkpoint_names=tuple(specs),
    )
