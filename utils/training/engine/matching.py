"""Fit a checkpoint's weights to a model: rename, compare, and explain a mismatch.

The loader (Cell 34) and resume (Cell 32) both go through here, so that a file
one of them accepts the other accepts too, and both name the same differences
(tensors, model settings, the line that rebuilds a matching model).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch

from .errors import ArchitectureMismatchError
from .prefixes import strip_wrapper_prefixes
from .state_dict_diff import (
    StateDictDiff,
    compare_state_dicts,
    config_differences,
    model_config_dict,
    rebuild_hint,
)

__all__ = ["match_names", "mismatch_error"]


def match_names(
    raw: Mapping[str, Any], model_sd: Mapping[str, torch.Tensor]
) -> tuple[dict[str, Any], list[str], StateDictDiff]:
    """The checkpoint's weights under the model's names, and how they compare.

    Args:
        raw: the weights as stored (possibly with ``module.`` / ``_orig_mod.`` prefixes).
        model_sd: ``state_dict()`` of the unwrapped target model.

    Returns:
        (renamed weights, prefixes removed, ``compare_state_dicts`` of the two). A prefix
        that the model's own names carry (a real submodule ``module``) is kept.
    """
    weights, stripped = strip_wrapper_prefixes(raw, model_keys=model_sd)
    return weights, stripped, compare_state_dicts(weights, model_sd)


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
        diff: from :func:`match_names` (``diff.ok`` is False).
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
        rebuild_hint=rebuild_hint(stored),
    )
    fix = "build the model with the checkpoint's settings in Cell 13 (Initialize Model)"
    fix += f": {diff.rebuild_hint}" if diff.rebuild_hint else ", or pick a checkpoint trained with this model"
    fix += f"; {then}" if then else ""
    return ArchitectureMismatchError(
        path,
        f"the checkpoint's weights do not fit the model ({diff.summary()}); the model was not changed\n"
        + diff.format(max_lines=max_lines),
        diff=diff,
        expected="a checkpoint saved from a model with the same architecture and config",
        fix=fix,
    )
