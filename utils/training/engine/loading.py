"""Load a checkpoint's weights into an existing model: safe, all-or-nothing, verified.

``load_model_weights`` is the library behind Cell 34. Compared with the
approved design's ``torch.load(weights_only=False)`` + ``load_state_dict``:

* the file is opened with ``weights_only=True`` (no code from the file runs)
  and ``mmap=True``: the optimizer state is never read, and the weights are
  copied straight from the page cache into the model's own tensors, so only
  one copy of the weights ever lives in private memory;
* names, shapes and dtypes are checked *before* the model is touched, so a
  failed load leaves the model bit-for-bit unchanged (``load_state_dict``
  copies every matching tensor before it raises);
* ``module.`` / ``_orig_mod.`` prefixes are stripped, bare state_dict files load,
  float16/bfloat16 weights load into a float32 model with a conversion;
* every tensor is checked bit-for-bit against the file afterwards, and tensors
  holding NaN or Inf are named.

Reading the file (and classifying its failures) lives in ``reading``, the
name/shape/dtype comparison and its readable text in ``state_dict_diff``, the
bit-level checks in ``tensor_checks``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.training.precision import resolve_device

from . import format as fmt
from .errors import NotACheckpointError
from .integrity import check_weight_checksums
from .matching import match_names, mismatch_error
from .metadata import normalise_metadata
from .prefixes import unwrap_model
from .reading import read_checkpoint_file
from .state_dict_diff import StateDictDiff
from .tensor_checks import equal_bits, has_nonfinite, storage_key

__all__ = ["LoadReport", "load_model_weights", "PREVIEW_LENGTH"]

PREVIEW_LENGTH = 5  # parameter tensors shown in the architecture preview
_DTYPE_LABELS = {torch.float32: "FP32", torch.float16: "FP16", torch.bfloat16: "BF16", torch.float64: "FP64"}


@dataclass
class LoadReport:
    """What ``load_model_weights`` did; Cell 34's panels are rendered from it.

    Sizes are in MiB (2**20 bytes). Shared (tied) tensors are counted once.
    """

    path: str
    kind: str  # "full" | "legacy" | "bare" | "module" (a pickled nn.Module, trusted files only)
    device: str
    mode: str = "eval"
    epoch: int | None = None
    global_step: int | None = None
    timestamp: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    stripped_prefixes: list[str] = field(default_factory=list)
    model_was_wrapped: bool = False
    dtype_conversions: list[tuple[str, str, str]] = field(default_factory=list)
    nonfinite_tensors: list[str] = field(default_factory=list)
    verified: bool | None = None
    # CRC-32s compared (True), none in the file (False), not asked for (None)
    integrity_checked: bool | None = None
    tensors_loaded: int = 0
    total_params: int = 0
    trainable_params: int = 0
    frozen_params: int = 0
    model_size_mb: float = 0.0
    dtype_label: str = "FP32"
    architecture_preview: list[tuple[str, list[int], str]] = field(default_factory=list)
    named_parameter_count: int = 0
    elapsed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The checkpoint's file name."""
        return Path(self.path).name


def load_model_weights(
    model: torch.nn.Module,
    checkpoint_path: str | Path,
    device: str | torch.device | None = None,
    *,
    trust_pickle: bool = False,
    verify: bool = True,
    check_integrity: bool = False,
) -> LoadReport:
    """Load a checkpoint's weights into ``model``, move it to ``device`` and set eval mode.

    Args:
        model: the model to fill (possibly wrapped by DataParallel/DDP/torch.compile).
        checkpoint_path: a full, legacy or bare-state_dict checkpoint file.
        device: where the model ends up; default CUDA when available, else CPU.
        trust_pickle: opt in to arbitrary unpickling for a file you trust (runs code from the file).
        verify: compare every loaded tensor bit-for-bit with the file afterwards.
        check_integrity: before copying, re-read the weights' bytes and compare them with the
            CRC-32 checksums the file stores (catches damage that ``torch.load`` lets through;
            about one more read of the weights, never of the optimizer state).

    Returns:
        A ``LoadReport``.

    Raises:
        CheckpointNotFoundError: no such file, or the path is a folder.
        CorruptCheckpointError: empty, truncated or unreadable file.
        NotACheckpointError: a readable torch file without model weights.
        UnsafeCheckpointError: the file needs arbitrary unpickling and ``trust_pickle`` is False.
        ArchitectureMismatchError: the weights do not fit the model; the model is unchanged.
        ValueError: ``device`` asks for CUDA on a machine without it (checked before anything is read).
    """
    start = time.perf_counter()
    target = resolve_device("auto" if device is None else str(device))
    with _gc_paused():
        return _load(model, Path(checkpoint_path), target, trust_pickle, verify, check_integrity, start)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Unpickling creates thousands of objects, which can set off a full garbage collection
    of the whole interpreter (70 ms in a fresh process, more in a busy notebook kernel);
    nothing made here needs collecting before we return."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load(
    model: torch.nn.Module,
    path: Path,
    target: torch.device,
    trust_pickle: bool,
    verify: bool,
    check_integrity: bool,
    start: float,
) -> LoadReport:
    loaded = read_checkpoint_file(path, trust_pickle=trust_pickle)
    obj, kind, raw = _checkpoint_object(loaded.obj, path)
    # Everything that can fail on the file's contents happens before the model is touched.
    meta = normalise_metadata(obj if kind in ("full", "legacy") else {})
    base = unwrap_model(model)
    model_sd = base.state_dict()
    weights, stripped, diff = match_names(raw, model_sd)
    pairs = _pair_tensors(path, weights, model_sd, diff, meta["config"], base)
    integrity = check_weight_checksums(path) if check_integrity else None
    moved = any(pair.target.device != target for pair in pairs)
    _copy_into(pairs)
    model.to(target)
    model.eval()
    report = _describe(path, kind, meta, base)
    report.stripped_prefixes, report.model_was_wrapped = stripped, base is not model
    report.dtype_conversions, report.tensors_loaded = diff.dtype_conversions, len(pairs)
    report.warnings.extend(loaded.warnings)
    report.integrity_checked = integrity
    # After a move to another device the model holds new tensors: look them up once more.
    current = base.state_dict() if moved else model_sd
    _check_after_load(report, [(pair.name, current[pair.name], pair.source) for pair in pairs], verify)
    report.elapsed_s = time.perf_counter() - start
    return report


def _checkpoint_object(obj: Any, path: Path) -> tuple[Any, str, Mapping[str, Any]]:
    """(the checkpoint, its kind, its weights); a whole pickled nn.Module counts as its state_dict."""
    if isinstance(obj, torch.nn.Module):  # only reachable with trust_pickle=True
        obj = obj.state_dict()
        return obj, "module", obj
    kind = fmt.checkpoint_kind(obj)
    if kind is None:
        raise NotACheckpointError(
            path,
            f"is a readable PyTorch file, but holds {fmt.describe_object(obj)}, not model weights",
            expected="a checkpoint dict with 'model_state_dict', or a state_dict of tensors",
            fix="pick a checkpoint written by Cell 32 (Run Training), or save model.state_dict()",
        )
    return obj, kind, obj if kind == "bare" else obj[fmt.MODEL_STATE_KEY]


@dataclass(frozen=True)
class _Pair:
    name: str
    target: torch.Tensor  # the model's tensor (shares memory with the parameter)
    source: torch.Tensor  # the checkpoint's tensor (memory-mapped)


def _pair_tensors(
    path: Path,
    weights: Mapping[str, Any],
    model_sd: Mapping[str, torch.Tensor],
    diff: StateDictDiff,
    config: Mapping[str, Any],
    base: torch.nn.Module,
) -> list[_Pair]:
    """Pair each distinct model tensor with its source; raise, touching nothing, on a mismatch."""
    if not diff.ok:
        raise mismatch_error(path, diff, config, base)
    pairs: dict[tuple, _Pair] = {}
    conflicts = []
    for name, target in model_sd.items():
        pair = pairs.setdefault(storage_key(target), _Pair(name, target, weights[name]))
        if pair.name != name and not _same_source(pair.source, weights[name]):
            conflicts.append(f"{pair.name} and {name} (one tensor in the model, two in the checkpoint)")
    if conflicts:
        raise mismatch_error(path, dataclasses.replace(diff, tied_conflicts=conflicts), config, base)
    return list(pairs.values())


def _same_source(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when two checkpoint tensors hold the same bits (the cheap way first)."""
    if storage_key(a) == storage_key(b):
        return True
    return a.dtype == b.dtype and a.shape == b.shape and equal_bits(a, b)


def _copy_into(pairs: list[_Pair]) -> None:
    """Copy each source into the model's own tensor (dtype converted on the fly)."""
    with torch.no_grad():
        for pair in pairs:
            pair.target.copy_(pair.source)


def _check_after_load(
    report: LoadReport, loaded: list[tuple[str, torch.Tensor, torch.Tensor]], verify: bool
) -> None:
    """Verify bits (optional) and look for NaN/Inf in each distinct (name, model tensor, source)."""
    if verify:
        differing = [name for name, tensor, source in loaded if not equal_bits(tensor, source)]
        report.verified = not differing
        if differing:
            report.warnings.append(
                f"{_tensors(len(differing))} differ from the checkpoint after loading: {_names(differing)}"
            )
    report.nonfinite_tensors = [name for name, tensor, _ in loaded if has_nonfinite(tensor)]
    if report.nonfinite_tensors:
        report.warnings.append(
            f"{_tensors(len(report.nonfinite_tensors))} with NaN or Inf values: {_names(report.nonfinite_tensors)} "
            "(loaded anyway; the model's outputs will not be finite)"
        )


def _tensors(count: int) -> str:
    return f"{count} tensor" if count == 1 else f"{count} tensors"


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _describe(path: Path, kind: str, meta: Mapping[str, Any], base: torch.nn.Module) -> LoadReport:
    """The report: the file's metadata (from ``normalise_metadata``) and the model's facts."""
    params = list(base.named_parameters())  # named_parameters() lists a tied tensor once
    buffers = list(base.named_buffers())
    trainable = sum(p.numel() for _, p in params if p.requires_grad)
    total = sum(p.numel() for _, p in params)
    device = str(params[0][1].device) if params else str(next((b.device for _, b in buffers), "cpu"))
    return LoadReport(
        path=str(path),
        kind=kind,
        device=device,
        mode="eval" if not base.training else "train",
        epoch=meta["epoch"],
        global_step=meta["global_step"],
        timestamp=meta["timestamp"],
        metrics=dict(meta["metrics"]),
        config=meta["config"] or None,  # {} for a bare file or a checkpoint without one
        total_params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        model_size_mb=sum(t.numel() * t.element_size() for _, t in params + buffers) / 2**20,
        dtype_label=_dtype_label([p for _, p in params]),
        architecture_preview=[(n, list(p.shape), str(p.device)) for n, p in params[:PREVIEW_LENGTH]],
        named_parameter_count=len(params),
    )


def _dtype_label(params: list[torch.Tensor]) -> str:
    """The floating dtype holding the most bytes, e.g. ``FP32``."""
    sizes: dict[torch.dtype, int] = {}
    for p in params:
        if p.is_floating_point():
            sizes[p.dtype] = sizes.get(p.dtype, 0) + p.numel() * p.element_size()
    if not sizes:
        return "n/a"
    dtype = max(sizes, key=sizes.__getitem__)
    return _DTYPE_LABELS.get(dtype, str(dtype).replace("torch.", "").upper())
