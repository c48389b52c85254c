"""Load a checkpoint's weights into an existing model: safe, all-or-nothing, verified.

``load_model_weights`` loads any checkpoint the engine lists into a model. Compared with
``torch.load(weights_only=False)`` + ``load_state_dict``:

* any source the engine knows loads (``sources/``: this notebook's files, nanoGPT,
  Lightning, Hugging Face, DCP, ...), read through the reading boundary: no code from
  the file runs, tensors are views of a memory-mapped file (the optimizer state is
  never read), and each lands in the model's own tensor, so only one copy of the weights
  ever lives in private memory;
* names, shapes, dtypes, whether each dtype converts, and every source tensor's bytes
  are checked *before* the model is touched, so a failed load leaves the model
  bit-for-bit unchanged (``load_state_dict`` copies every matching tensor before it raises);
* ``module.`` / ``_orig_mod.`` prefixes are stripped; float16/bfloat16 weights load into
  a float32 model with a conversion;
* each block is compared bit-for-bit with the file and searched for NaN/Inf right after
  it is copied (``copying``);
* ``strict=False`` loads what fits and reports the rest (``partial``).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .copying import CopyJob, copy_verified
from .devices import resolve_device
from .errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError
from .matching import fit_weights
from .partial import PartialPlan
from .prefixes import unwrap_model
from .record import CheckpointRecord
from .sources import WeightSet, open_checkpoint, probe_path
from .sources.trusted import trusted_checkpoint
from .text import first_line, safe_text, short_repr

__all__ = ["LoadReport", "ModelMoveError", "load_model_weights", "PREVIEW_LENGTH"]

PREVIEW_LENGTH = 5  # parameter tensors shown in the architecture preview
_DTYPE_LABELS = {torch.float32: "FP32", torch.float16: "FP16", torch.bfloat16: "BF16", torch.float64: "FP64"}


@dataclass
class LoadReport:
    """What ``load_model_weights`` did; the notebook's panels are rendered from it.

    The checkpoint's own facts live in ``record`` (one typed record for every reader);
    ``kind``, ``epoch``, ``metrics``, ... are read from it. Sizes are in MiB (2**20 bytes).
    Shared (tied) tensors are counted once.
    """

    path: str
    record: CheckpointRecord
    device: str
    mode: str = "eval"
    strict: bool = True
    stripped_prefixes: list[str] = field(default_factory=list)
    model_was_wrapped: bool = False
    source_notes: list[str] = field(default_factory=list)  # what the source did to fit our names
    dtype_conversions: list[tuple[str, str, str]] = field(default_factory=list)
    nonfinite_tensors: list[str] = field(default_factory=list)
    verified: bool | None = None
    # CRC-32s compared (True), none in the file (False), not asked for (None)
    integrity_checked: bool | None = None
    tensors_loaded: int = 0
    partial: PartialPlan | None = None  # strict=False: what loaded, was resized, kept, ignored
    frozen_loaded: int = 0  # freeze_loaded=True: parameters frozen because they came from the file
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
        """The checkpoint's file (or folder) name."""
        return Path(self.path).name

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def epoch(self) -> int | None:
        return self.record.epoch

    @property
    def global_step(self) -> int | None:
        return self.record.global_step

    @property
    def timestamp(self) -> str | None:
        return self.record.timestamp

    @property
    def metrics(self) -> dict[str, float | None]:
        return dict(self.record.metrics)

    @property
    def config(self) -> dict[str, Any] | None:
        return dict(self.record.config) or None


class ModelMoveError(RuntimeError):
    """The weights were loaded, but the model could not be moved to the requested device."""


def load_model_weights(
    model: torch.nn.Module,
    checkpoint_path: str | Path,
    device: str | torch.device | None = None,
    *,
    trust_pickle: bool = False,
    verify: bool = True,
    check_integrity: bool = False,
    strict: bool = True,
    freeze_loaded: bool = False,
) -> LoadReport:
    """Load a checkpoint's weights into ``model``, move it to ``device`` and set eval mode.

    Args:
        model: the model to fill (possibly wrapped by DataParallel/DDP/torch.compile).
        checkpoint_path: a checkpoint file or folder of any kind ``list_checkpoints`` lists.
        device: where the model ends up; default CUDA when available, else CPU.
        trust_pickle: opt in to arbitrary unpickling for a file you trust (runs code from the file).
        verify: compare every loaded tensor bit-for-bit with the file while copying.
        check_integrity: before copying, compare the weights' bytes with the checksums the file
            stores (a zip's CRC-32s: damage ``torch.load`` lets through; one more read of the
            weights, never of the optimizer state).
        strict: every tensor must fit (default). False: load what fits (see ``partial``).
        freeze_loaded: set ``requires_grad=False`` on the parameters loaded whole from the file.

    Returns:
        A ``LoadReport``.

    Raises:
        CheckpointNotFoundError: no such file.
        CorruptCheckpointError: empty, truncated, damaged or unreadable; NotACheckpointError: no weights.
        UnsafeCheckpointError: the file needs arbitrary unpickling and ``trust_pickle`` is False.
        ArchitectureMismatchError: the weights do not fit the model; the model is unchanged.
        ValueError: ``device`` is not a device this machine has (checked before anything is read).
        ModelMoveError: the weights were loaded but the move to ``device`` failed (the model
            stays where it was).
    """
    start = time.perf_counter()
    target = resolve_device(device)
    path = Path(checkpoint_path).expanduser()
    with _gc_paused(), _opened(path, trust_pickle) as (record, weights):
        report = _load_into(
            model, path, record, weights, _Options(verify, check_integrity, strict, freeze_loaded)
        )
    _move(model, target, report)
    report.elapsed_s = time.perf_counter() - start
    return report


@dataclass(frozen=True)
class _Options:
    verify: bool
    check_integrity: bool
    strict: bool
    freeze_loaded: bool


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Reading a pickle creates thousands of objects, which can set off a full garbage collection
    of the whole interpreter (70 ms in a fresh process, more in a busy notebook kernel);
    nothing made here needs collecting before we return."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def _opened(path: Path, trust_pickle: bool) -> Iterator[tuple[CheckpointRecord, WeightSet]]:
    """(record, weights) of any known source; a refused pickle is loaded only with ``trust_pickle``."""
    with contextlib.ExitStack() as stack:
        try:
            with _file_errors(path):
                checkpoint = stack.enter_context(open_checkpoint(path))
                record = checkpoint.record()
                weights = stack.enter_context(checkpoint.weights())
        except UnsafeCheckpointError:
            if not trust_pickle:
                raise
            stack.close()
            record, weights = trusted_checkpoint(stack.enter_context(probe_path(path)))
        yield record, weights


@contextlib.contextmanager
def _file_errors(path: Path) -> Iterator[None]:
    """Whatever else goes wrong reading or fitting a file becomes a CheckpointError naming it.

    The readers map every failure they foresee; this catches the rest (a value of a type no
    reader expected in some foreign file), so the caller always gets the project's error,
    before anything was copied.
    """
    try:
        yield
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 -- re-raised as ours, chained
        raise CorruptCheckpointError(
            path,
            f"cannot be read ({type(error).__name__}: {safe_text(first_line(error), 200)})",
            expected="a checkpoint of a kind list_checkpoints reads",
            fix="pick another checkpoint; this file is damaged or of a layout this reader does not know",
        ) from error


def _load_into(
    model: torch.nn.Module, path: Path, record: CheckpointRecord, weights: WeightSet, options: _Options
) -> LoadReport:
    # Everything that can fail on the file's contents happens before the model is touched.
    base = unwrap_model(model)
    with _file_errors(path):
        fitted = fit_weights(path, weights, base, record.config, strict=options.strict)
        integrity = _check_integrity(path, fitted.weights, fitted.jobs) if options.check_integrity else None
    result = copy_verified(fitted.jobs, options.verify)
    frozen = _freeze(base, fitted.plan) if options.freeze_loaded else 0
    report = _describe(path, record, base)
    report.strict, report.partial, report.frozen_loaded = options.strict, fitted.plan, frozen
    report.stripped_prefixes, report.model_was_wrapped = fitted.stripped, base is not model
    report.source_notes = list(fitted.weights.notes)
    report.dtype_conversions, report.tensors_loaded = fitted.diff.dtype_conversions, len(fitted.jobs)
    report.integrity_checked = integrity
    report.verified = None if not options.verify else not result.differing
    report.nonfinite_tensors = result.nonfinite
    _warn(report, result.differing)
    _warn_activation(report, record, base)
    return report


def _warn_activation(report: LoadReport, record: CheckpointRecord, base: torch.nn.Module) -> None:
    """The weights fit, but the file's model computed another GELU (e.g. GPT-2's tanh form): say so."""
    stored = (record.model_config or {}).get("activation")
    ours = getattr(getattr(base, "config", None), "activation", None)
    if stored is not None and ours is not None and stored != ours:
        report.warnings.append(
            f"the file's model uses activation {short_repr(stored)}, this model {ours!r}: its outputs differ slightly "
            f"from the original's; build_model_from_checkpoint({report.path!r}) builds a matching model"
        )


def _check_integrity(path: Path, weights: WeightSet, jobs: list[CopyJob]) -> bool:
    """Compare the weights' bytes with the file's checksums; raise, touching nothing, on damage."""
    damaged = weights.damaged([job.name for job in jobs])
    if damaged:
        shown = ", ".join(damaged[:5]) + (f", ... ({len(damaged) - 5} more)" if len(damaged) > 5 else "")
        raise CorruptCheckpointError(
            path,
            f"is damaged: {_tensors(len(damaged))} fail the file's own CRC-32 checksum ({shown}); "
            "the bytes changed after the file was written (a disk or sync error)",
            expected="weights whose bytes match the checksums stored when the checkpoint was saved",
            fix="use another checkpoint (list_checkpoints(folder) lists them); this file cannot be repaired",
        )
    return damaged is not None


def _freeze(base: torch.nn.Module, plan: PartialPlan | None) -> int:
    """``requires_grad=False`` on every parameter loaded whole from the file; returns their elements.

    A resized tensor (some rows from the file, some new) stays trainable: its new rows must learn.
    """
    frozen = 0
    for name, parameter in base.named_parameters():
        if (plan is None or name in plan.loaded) and parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def _warn(report: LoadReport, differing: list[str]) -> None:
    if differing:
        report.warnings.append(
            f"{_tensors(len(differing))} differ from the checkpoint after loading: {_names(differing)}"
        )
    if report.nonfinite_tensors:
        report.warnings.append(
            f"{_tensors(len(report.nonfinite_tensors))} with NaN or Inf values: "
            f"{_names(report.nonfinite_tensors)} (loaded anyway; the model's outputs will not be finite)"
        )


def _move(model: torch.nn.Module, target: torch.device, report: LoadReport) -> None:
    """Move the loaded model to ``target`` and set eval mode; a failed move puts it back where it was."""
    base = unwrap_model(model)
    first = next(iter(base.parameters()), None)
    origin = first.device if first is not None else torch.device("cpu")
    try:
        model.to(target)
    except Exception as error:  # noqa: BLE001 -- a backend may fail any way (AssertionError, ...)
        with contextlib.suppress(Exception):
            model.to(origin)
        raise ModelMoveError(
            f"the weights were loaded, but moving the model to {target} failed "
            f"({type(error).__name__}: {first_line(error)}); the model stays on {origin}"
        ) from error
    model.eval()
    report.mode = "eval"
    report.device = str(next(iter(base.parameters()), torch.empty(0)).device)
    report.architecture_preview = [(n, shape, report.device) for n, shape, _ in report.architecture_preview]


def _tensors(count: int) -> str:
    return f"{count} tensor" if count == 1 else f"{count} tensors"


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _describe(path: Path, record: CheckpointRecord, base: torch.nn.Module) -> LoadReport:
    """The report: the file's record and the model's facts (device and mode are set after the move)."""
    params = list(base.named_parameters())  # named_parameters() lists a tied tensor once
    buffers = list(base.named_buffers())
    trainable = sum(p.numel() for _, p in params if p.requires_grad)
    total = sum(p.numel() for _, p in params)
    return LoadReport(
        path=str(path),
        record=record,
        device="cpu",
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
