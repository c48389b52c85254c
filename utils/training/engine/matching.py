"""Fit a checkpoint's weights to a model: rename, compare, plan the copy, explain a mismatch.

The loader and resume both go through :func:`fit_weights`, so that a file one of them
accepts the other accepts too, and both name the same differences (tensors, model
settings, the line that rebuilds a matching model). Everything here reads names, shapes
and dtypes, materialises views of the file and probes dtype conversions on one element:
nothing writes into the model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .copying import CopyJob, UncopyableError, check_copyable
from .errors import ArchitectureMismatchError
from .partial import PartialPlan, plan_partial_load, resizable_names
from .prefixes import strip_wrapper_prefixes, unwrap_model
from .sources.base import WeightSet
from .state_dict_diff import (
    StateDictDiff,
    compare_state_dicts,
    config_differences,
    model_config_dict,
    rebuild_hint,
)
from .tensor_checks import equal_bits, storage_key
from .text import dtype_name


@dataclass
class FittedWeights:
    """A checkpoint's weights planned into a model: the copies to make, and what was found."""

    jobs: list[CopyJob]  # one per distinct model tensor (tied tensors once), sources materialised
    diff: StateDictDiff
    stripped: list[str]  # wrapper prefixes removed from the file's names
    weights: WeightSet  # under the model's names
    plan: PartialPlan | None = None  # strict=False only


def fit_weights(
    path: str | os.PathLike,
    weights: WeightSet,
    model: torch.nn.Module,
    checkpoint_config: Mapping[str, Any] | None,
    *,
    strict: bool = True,
    max_lines: int = 8,
    then: str = "",
) -> FittedWeights:
    """Plan copying ``weights`` into ``model`` (unwrapped); raise, touching nothing, when they do not fit.

    Args:
        path: the checkpoint (named in errors).
        weights: the source's weights, in the file's names.
        model: the model (wrappers are unwrapped).
        checkpoint_config: the file's config, for the mismatch error's settings and rebuild line.
        strict: every tensor must fit; False plans a partial load (see ``partial``).
        max_lines, then: as for :func:`mismatch_error`.

    Raises:
        ArchitectureMismatchError: (strict) names, shapes or dtypes do not fit, or a tied tensor is
            stored twice with different values.
        CheckpointError: a source tensor cannot be read (a missing or short member).
    """
    base = unwrap_model(model)
    model_sd = base.state_dict()
    specs, stripped = strip_wrapper_prefixes(weights.specs(), model_keys=model_sd)
    weights = weights.renamed(dict(zip(specs, weights.specs(), strict=True)))
    diff = _with_uncopyable(compare_state_dicts(specs, model_sd), specs, model_sd)
    plan = None
    if strict and not diff.ok:
        raise mismatch_error(path, diff, checkpoint_config, base, max_lines=max_lines, then=then)
    if not strict:
        parameters = {name for name, _ in base.named_parameters(remove_duplicate=False)}
        plan = plan_partial_load(diff, specs, model_sd, resizable_names(base), parameters)
    jobs, conflicts = _jobs(weights, model_sd, plan)
    if conflicts:
        diff = dataclasses.replace(diff, tied_conflicts=conflicts)
        raise mismatch_error(path, diff, checkpoint_config, base, max_lines=max_lines, then=then)
    return FittedWeights(jobs, diff, stripped, weights, plan)


def _with_uncopyable(diff: StateDictDiff, specs: Mapping[str, Any], model_sd: Mapping[str, torch.Tensor]):
    """The diff, with tensors whose dtype cannot be converted on the model's device as dtype mismatches."""
    groups: dict[tuple, list[str]] = {}
    for name, target in model_sd.items():
        spec = specs.get(name)
        if (
            spec is not None
            and spec.dtype is not None
            and spec.problem is None
            and spec.dtype != target.dtype
        ):
            groups.setdefault((spec.dtype, target.dtype, target.device), []).append(name)
    bad: list[tuple[str, str, str]] = []
    for (source, target, device), names in groups.items():
        try:
            check_copyable(
                [CopyJob(names[0], torch.empty(1, dtype=target, device=device), torch.empty(1, dtype=source))]
            )
        except UncopyableError:
            bad.extend((name, dtype_name(source), dtype_name(target)) for name in names)
    if not bad:
        return diff
    names = {name for name, _, _ in bad}
    return dataclasses.replace(
        diff,
        dtype_mismatches=diff.dtype_mismatches + bad,
        dtype_conversions=[c for c in diff.dtype_conversions if c[0] not in names],
    )


def _jobs(weights: WeightSet, model_sd, plan: PartialPlan | None) -> tuple[list[CopyJob], list[str]]:
    """One copy per distinct model tensor (tied tensors once), every source materialised, and the
    tied tensors stored twice with different values."""
    wanted = list(model_sd) if plan is None else list(plan.loaded)
    rows = {} if plan is None else {name: min(ours[0], theirs[0]) for name, ours, theirs in plan.resized}
    chosen: dict[tuple, str] = {}
    conflicts, jobs = [], []
    for name in [*wanted, *rows]:
        first = chosen.setdefault(storage_key(model_sd[name]), name)
        if first != name:
            if not _same_source(weights, first, name):
                conflicts.append(f"{first} and {name} (one tensor in the model, two in the checkpoint)")
            continue
        source, target = weights.tensor(name), model_sd[name]
        if name in rows:
            source, target = source[: rows[name]], target[: rows[name]]
        jobs.append(CopyJob(name, target, source))
    return jobs, conflicts


def _same_source(weights: WeightSet, a: str, b: str) -> bool:
    """True when two checkpoint names hold the same bits (the cheap way first)."""
    if weights.storage_key(a) == weights.storage_key(b):
        return True
    left, right = weights.tensor(a), weights.tensor(b)
    return left.dtype == right.dtype and left.shape == right.shape and equal_bits(left, right)


__all__ = ["FittedWeights", "fit_weights", "mismatch_error"]


def mismatch_error(
    path: str | os.PathLike,
    diff: StateDictDiff,
    checkpoint_config: Mapping[str, Any] | None,
    model: torch.nn.Module,
    *,
    max_lines: int = 8,
    then: str = "",
) -> ArchitectureMismatchError:
    """The error for weights that do not fit, with the settings that differ and the rebuild line.

    Args:
        path: the checkpoint file.
        diff: the comparison of the file's weights with the model's (``diff.ok`` is False).
        checkpoint_config: the file's ``config`` dict (``{"model": ..., "training": ...}``), or None.
        model: the unwrapped target model (its ``config`` is compared with the file's).
        max_lines: lines shown per section of the diff.
        then: what to do once the model is rebuilt, appended to the fix (e.g. ``"then resume"``).

    Returns:
        An ``ArchitectureMismatchError`` whose ``diff`` carries ``config_differences`` and
        ``rebuild_hint``.
    """
    stored = checkpoint_config.get("model") if isinstance(checkpoint_config, Mapping) else None
    stored = stored if isinstance(stored, Mapping) else None
    diff = dataclasses.replace(
        diff,
        config_differences=config_differences(stored, model_config_dict(model)),
        rebuild_hint=rebuild_hint(path),
    )
    fix = f"build a model that fits the file: {diff.rebuild_hint}"
    fix += ", or pick a checkpoint trained with this model"
    fix += f"; {then}" if then else ""
    return ArchitectureMismatchError(
        path,
        f"the checkpoint's weights do not fit the model ({diff.summary()}); the model was not changed\n"
        + diff.format(max_lines=max_lines),
        diff=diff,
        expected="a checkpoint saved from a model with the same architecture and config",
        fix=fix,
    )
