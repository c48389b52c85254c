"""Wrapper prefixes in parameter names: one place that knows them.

``torch.nn.DataParallel`` and ``DistributedDataParallel`` add ``module.`` to
every key; ``torch.compile`` adds ``_orig_mod.``. They can stack
(``module._orig_mod.``). The saver stores clean names; the loader and resume
strip the prefixes of files written by other code, with the same function.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TypeVar

import torch

__all__ = ["WRAPPER_PREFIXES", "strip_wrapper_prefixes", "unwrap_model"]

WRAPPER_PREFIXES = ("module.", "_orig_mod.")

V = TypeVar("V")


def strip_wrapper_prefixes(
    state_dict: Mapping[str, V], model_keys: Collection[str] = ()
) -> tuple[dict[str, V], list[str]]:
    """Remove wrapper prefixes shared by every key, unless the model's own names carry them.

    A prefix is stripped only when *all* keys carry it. Given the model's state_dict
    names, stripping also stops as soon as every name is one of the model's: a model
    with a real submodule called ``module`` (or ``_orig_mod``) keeps its names, while a
    DataParallel copy of that model loses exactly the one prefix the wrapper added.
    The saver, the loader and resume all rename with this one function.

    Args:
        state_dict: the checkpoint's weights.
        model_keys: the names in the target model's ``state_dict()``; empty: unknown.

    Returns:
        The renamed dict (same values, same order) and the prefixes removed, in order.
    """
    stripped: list[str] = []
    current = dict(state_dict)
    known = model_keys if isinstance(model_keys, (set, frozenset, Mapping)) else set(model_keys)
    while current and not (known and all(key in known for key in current)):
        # a non-string key (a damaged or foreign file) carries no prefix: nothing is stripped
        prefix = next(
            (p for p in WRAPPER_PREFIXES if all(isinstance(k, str) and k.startswith(p) for k in current)),
            None,
        )
        if prefix is None:
            break
        current = {key[len(prefix) :]: value for key, value in current.items()}
        stripped.append(prefix)
    return current, stripped


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DataParallel / DDP / torch.compile wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or (
            model.module
            if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel))
            else None
        )
        if inner is None:
            return model
        model = inner
