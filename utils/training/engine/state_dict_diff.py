"""Compare a checkpoint's weights with a model's, and explain the difference readably.

PyTorch's strict ``load_state_dict`` error is a wall of key names. Here the
comparison is structured (``StateDictDiff``) and its text form collapses layer
numbers, the way Hugging Face's loading report does::

    Missing from the checkpoint (72 tensors the model needs):
      transformer.h.{6..11}.* (72 tensors)
    Shape mismatches (checkpoint vs model):
      transformer.h.{0..5}.attn.c_attn.weight: checkpoint [192, 64] vs model [96, 32]

Only names, shapes and dtypes are compared; no tensor data is read, so the
comparison is instant even for memory-mapped checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .tensor_checks import storage_key
from .text import dtype_name, safe_text, short_repr

__all__ = [
    "StateDictDiff",
    "compare_state_dicts",
    "config_differences",
    "rebuild_hint",
    "model_config_dict",
    "collapse_names",
]

# One entry per problem tensor: (name, what the checkpoint has, what the model has).
Mismatch = tuple[str, str, str]
ShapeMismatch = tuple[str, tuple[int, ...], tuple[int, ...]]

_NUMBER = re.compile(r"^\d{1,9}$")  # a layer number; longer digit runs are names, not numbers
# The order GPTConfig declares its fields in; other keys follow in their own order.


@dataclass(frozen=True)
class StateDictDiff:
    """How a checkpoint's ``state_dict`` differs from a model's.

    ``dtype_conversions`` are floating-point differences that load with a
    conversion (e.g. a float16 checkpoint into a float32 model); they do not
    make the diff fail. ``config_differences`` and ``rebuild_hint`` are filled
    in by the loader when the checkpoint stores its model config.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[ShapeMismatch] = field(default_factory=list)
    dtype_mismatches: list[Mismatch] = field(default_factory=list)
    dtype_conversions: list[Mismatch] = field(default_factory=list)
    tied_conflicts: list[str] = field(default_factory=list)
    config_differences: list[str] = field(default_factory=list)
    rebuild_hint: str | None = None
    checkpoint_names: tuple[str, ...] = field(default=(), repr=False)
    model_names: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        """True when every tensor can be copied into the model."""
        problems = (
            self.missing,
            self.unexpected,
            self.shape_mismatches,
            self.dtype_mismatches,
            self.tied_conflicts,
        )
        return not any(problems)

    def summary(self) -> str:
        """One line: the counts of each kind of problem, e.g. ``72 missing, 2 unexpected``."""
        parts = [
            (len(self.missing), "missing"),
            (len(self.unexpected), "unexpected"),
            (len(self.shape_mismatches), "with a different shape"),
            (len(self.dtype_mismatches), "with an incompatible dtype"),
            (len(self.tied_conflicts), "tied in the model but different in the checkpoint"),
        ]
        text = ", ".join(f"{count} {label}" for count, label in parts if count)
        return f"tensors: {text}" if text else "no differences"

    def format(self, max_lines: int = 8) -> str:
        """The readable, collapsed diff; each section shows at most ``max_lines`` lines."""
        missing, unexpected = len(self.missing), len(self.unexpected)
        sections = [
            (f"Missing from the checkpoint ({_count(missing)} the model needs)", self._missing_lines()),
            (
                f"Unexpected in the checkpoint ({_count(unexpected)} the model does not have)",
                self._unexpected_lines(),
            ),
            ("Shape mismatches (checkpoint vs model)", _group_pairs(self.shape_mismatches)),
            ("Dtype mismatches (checkpoint vs model)", _group_pairs(self.dtype_mismatches)),
            ("Tied in the model but different in the checkpoint", list(self.tied_conflicts)),
            ("Config differences", list(self.config_differences)),
        ]
        out: list[str] = []
        for title, lines in sections:
            if lines:
                out.append(f"{title}:")
                out.extend(f"  {safe_text(line)}" for line in _capped(lines, max_lines))
        if self.rebuild_hint:
            out.append("Build a matching model:")
            out.append(f"  {self.rebuild_hint}")
        return "\n".join(out) if out else "No differences."

    def _missing_lines(self) -> list[str]:
        return collapse_names(self.missing, self.model_names or self.missing)

    def _unexpected_lines(self) -> list[str]:
        return collapse_names(self.unexpected, self.checkpoint_names or self.unexpected)


def compare_state_dicts(
    checkpoint_sd: Mapping[str, Any], model_sd: Mapping[str, torch.Tensor]
) -> StateDictDiff:
    """Compare names, shapes and dtypes (never tensor values).

    Args:
        checkpoint_sd: the checkpoint's weights, wrapper prefixes already stripped.
        model_sd: ``model.state_dict()`` of the (unwrapped) model.

    Returns:
        A ``StateDictDiff``; its ``ok`` is True when the checkpoint fits the model.
    """
    missing = [name for name in model_sd if name not in checkpoint_sd]
    unexpected = [str(name) for name in checkpoint_sd if name not in model_sd]
    shapes: list[ShapeMismatch] = []
    dtypes: list[Mismatch] = []
    conversions: list[Mismatch] = []
    converted: set[tuple] = set()  # a tied tensor (lm_head = wte) is converted once, not per name
    for name, target in model_sd.items():
        if name not in checkpoint_sd:
            continue
        source = checkpoint_sd[name]
        problem = _unusable(source)
        if problem is not None:
            dtypes.append((name, problem, dtype_name(target.dtype)))
        elif tuple(source.shape) != tuple(target.shape):
            shapes.append((name, tuple(source.shape), tuple(target.shape)))
        elif source.dtype != target.dtype:
            pair = (name, dtype_name(source.dtype), dtype_name(target.dtype))
            both_float = source.dtype.is_floating_point and target.dtype.is_floating_point
            if not both_float:
                dtypes.append(pair)
            elif storage_key(target) not in converted:
                converted.add(storage_key(target))
                conversions.append(pair)
    return StateDictDiff(
        missing=missing,
        unexpected=unexpected,
        shape_mismatches=shapes,
        dtype_mismatches=dtypes,
        dtype_conversions=conversions,
        checkpoint_names=tuple(str(name) for name in checkpoint_sd),
        model_names=tuple(model_sd),
    )


def _unusable(value: Any) -> str | None:
    """Why a checkpoint value cannot be copied into a dense tensor; None when it can.

    ``value`` is a tensor or a source's ``TensorSpec`` (shape, dtype and ``problem`` known
    without reading data; a sparse tensor's spec has no problem: the reader densifies it).
    """
    if hasattr(value, "problem") and hasattr(value, "shape"):
        if value.problem is None and value.dtype is None:
            return "a tensor of unknown dtype"
        return value.problem
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}, not a tensor"
    if value.layout != torch.strided:
        return f"a {str(value.layout).replace('torch.', '')} tensor"
    if value.is_meta:
        return "a meta tensor (no data)"
    if value.is_quantized:
        return f"a quantized {dtype_name(value.dtype)} tensor"
    return None


def config_differences(
    checkpoint_config: Mapping[str, Any] | None, model_config: Mapping[str, Any] | None
) -> list[str]:
    """The settings that differ, one line each, e.g. ``n_layer: checkpoint 12, model 6``.

    Args:
        checkpoint_config: the model config stored in the checkpoint.
        model_config: the current model's config (see ``model_config_dict``).

    Returns:
        One line per differing key (checkpoint's key order, then the model's extra keys);
        empty when either config is unknown.
    """
    if not checkpoint_config or not model_config:
        return []
    keys = list(checkpoint_config) + [k for k in model_config if k not in checkpoint_config]
    lines = []
    for key in keys:
        ours = model_config.get(key, _ABSENT)
        theirs = checkpoint_config.get(key, _IMPLIED.get(key, _ABSENT))
        if ours != theirs:
            lines.append(f"{key}: checkpoint {_show(theirs)}, model {_show(ours)}")
    return lines


class _Absent:
    def __repr__(self) -> str:
        return "(not set)"


_ABSENT = _Absent()
# Settings added after checkpoints were written without them: absent means this value.
_IMPLIED = {"activation": "gelu"}


def _show(value: Any) -> str:
    return short_repr(value)


def rebuild_hint(path: str | os.PathLike) -> str:
    """The line of Python that builds a model fitting the checkpoint at ``path``.

    ``build_model_from_checkpoint`` reads the model settings the file carries (or infers
    them from its tensor shapes), so the line works for every source the engine reads.
    """
    return f"model, load_report = build_model_from_checkpoint({str(path)!r})"


def model_config_dict(model: torch.nn.Module) -> dict[str, Any] | None:
    """The model's config as a dict: ``model.config.to_dict()``, a dataclass, a mapping, or None."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    return None


def collapse_names(names: Iterable[str], universe: Iterable[str]) -> list[str]:
    """Collapse layer numbers: ``transformer.h.{6..11}.* (72 tensors)``.

    A layer whose every tensor (in ``universe``) is listed shows as ``prefix.N.*``;
    the remaining names are grouped by what follows the layer number.

    Args:
        names: the names to show.
        universe: every name of the same state dict (tells which layers are complete).

    Returns:
        The display lines, in first-seen order.
    """
    names = list(names)
    layer_size = _count_per_layer(universe)
    listed = _count_per_layer(names)
    groups: dict[tuple[str, str], dict[int, None]] = {}  # (prefix, suffix) -> layer numbers, ordered
    counts: dict[tuple[str, str], int] = {}
    for name in names:
        split = _split_at_number(name)
        if split is None:
            key, number = (name, ""), None
        else:
            prefix, number, suffix = split
            whole = listed[(prefix, number)] == layer_size.get((prefix, number))
            key = (prefix, "*" if whole else suffix)
        groups.setdefault(key, {})
        if number is not None:
            groups[key][number] = None
        counts[key] = counts.get(key, 0) + 1
    lines = []
    for (prefix, suffix), numbers in groups.items():
        if not numbers:
            lines.append(prefix)
        elif suffix == "*":
            lines.append(f"{_join(prefix, list(numbers), suffix)} ({counts[(prefix, suffix)]} tensors)")
        else:
            lines.append(_join(prefix, list(numbers), suffix))
    return lines


def _count_per_layer(names: Iterable[str]) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for name in names:
        split = _split_at_number(name)
        if split is not None:
            counts[split[:2]] = counts.get(split[:2], 0) + 1
    return counts


def _split_at_number(name: str) -> tuple[str, int, str] | None:
    """``a.h.6.attn.w`` -> (``a.h``, 6, ``attn.w``); None without a numeric part."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if _NUMBER.match(part):
            return ".".join(parts[:i]), int(part), ".".join(parts[i + 1 :])
    return None


def _join(prefix: str, numbers: list[int], suffix: str) -> str:
    middle = _ranges(numbers)
    return f"{prefix}.{middle}.{suffix}" if prefix else f"{middle}.{suffix}"


def _ranges(numbers: list[int]) -> str:
    """[6, 7, 8, 11] -> ``{6..8,11}``; a single number stays bare."""
    ordered = sorted(set(numbers))
    if len(ordered) == 1:
        return str(ordered[0])
    runs: list[list[int]] = []
    for n in ordered:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [f"{run[0]}..{run[-1]}" if len(run) > 2 else ",".join(map(str, run)) for run in runs]
    return "{" + ",".join(parts) + "}"


def _group_pairs(entries: list[tuple[str, Any, Any]]) -> list[str]:
    """Group ``(name, checkpoint, model)`` entries that differ only in their layer number."""
    groups: dict[tuple[str, str, str, str], list[int]] = {}  # same layout and values -> layer numbers
    for name, theirs, ours in entries:
        split = _split_at_number(name)
        prefix, number, suffix = split if split is not None else (name, None, "")
        key = (prefix, suffix, _fmt(theirs), _fmt(ours))
        groups.setdefault(key, [])
        if number is not None:
            groups[key].append(number)
    lines = []
    for (prefix, suffix, theirs, ours), numbers in groups.items():
        name = _join(prefix, numbers, suffix) if numbers else prefix
        lines.append(f"{name}: checkpoint {theirs} vs model {ours}")
    return lines


def _fmt(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def _capped(lines: list[str], limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    return lines[: limit - 1] + [f"... and {len(lines) - limit + 1} more"]


def _count(count: int) -> str:
    return f"{count} tensor" if count == 1 else f"{count} tensors"
