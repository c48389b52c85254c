"""Cell 34's text panels: pure functions from data to the approved design's layout.

The engine's errors say what happened and the API fix; these panels add the notebook's
advice (which cell to run). Every name or string that came from a file is printed
through ``safe_text``.

Each function returns a string; the cell prints them in order with ``print``.
A panel ends with the blank line the design shows after it, so printing them
one after another reproduces the design's output exactly. Nothing here
touches files, tensors or globals, so every panel is tested on its own.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from utils.training.engine.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CorruptCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.record import KINDS
from utils.training.engine.text import safe_text

__all__ = [
    "RULE",
    "SELECTION_METHODS",
    "render_available_checkpoints",
    "render_selection",
    "render_load_report",
    "render_model_not_found",
    "render_no_checkpoints",
    "render_architecture_mismatch",
    "render_corrupt_checkpoint",
    "render_unsafe_checkpoint",
    "render_load_error",
    "render_device_failure",
]

RULE = "=" * 71  # the design's rule, character for character
SELECTION_METHODS = {
    "cell33": "From Cell 33 (Checkpoint Recovery)",
    "auto": "Auto-selected best (lowest val_loss)",
    "manual": "Manual override",
    "picker": "Picked in the widget (PICKER)",
}
_KIND_LABELS = {
    "full": "full checkpoint (this notebook's format)",
    "legacy": "legacy checkpoint (the earlier training cell's format)",
    "bare": "bare state_dict (weights only: no epoch, metrics or config)",
    "module": "pickled model object (trusted file)",
    **{kind: label for kind, label in KINDS.items() if kind not in ("full", "legacy", "bare", "module")},
}
_MAX_LISTED = 10  # checkpoints shown in AVAILABLE CHECKPOINTS


def _header(title: str) -> list[str]:
    return [RULE, title, RULE, ""]


def _join(lines: list[str]) -> str:
    return "\n".join(lines)


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _number(value: int | None, width: int = 0) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}}"


def render_available_checkpoints(checkpoints: Sequence[Any], selected_index: int | None) -> str:
    """AVAILABLE CHECKPOINTS, the selected one marked with ``→``.

    Args:
        checkpoints: entries with ``epoch``, ``global_step``, ``train_loss``, ``val_loss``
            and ``name`` (e.g. ``CheckpointRecord``), best first.
        selected_index: the position of the chosen entry, or None (e.g. a manual path not listed).

    Returns:
        The panel text, ending with a blank line.
    """
    lines = _header("AVAILABLE CHECKPOINTS")
    shown = list(range(min(len(checkpoints), _MAX_LISTED)))
    if selected_index is not None and selected_index >= _MAX_LISTED:
        shown.append(selected_index)
    for i in shown:
        info = checkpoints[i]
        mark = "→" if i == selected_index else " "
        lines.append(
            f"{mark} [{i}] Epoch {_number(info.epoch, 2)} | Step {_number(info.global_step, 4)} | "
            f"train_loss={_loss(info.train_loss)} | val_loss={_loss(info.val_loss)}"
        )
        lines.extend([f"     {safe_text(info.name, 120)}", ""])
    if len(checkpoints) > len(shown):
        lines.extend([f"  ... and {len(checkpoints) - len(shown)} more checkpoints", ""])
    if not checkpoints:
        lines.extend(["  (none)", ""])
    return _join(lines)


def render_selection(name: str, method: str) -> str:
    """The two lines naming the chosen file and the rule that chose it.

    Args:
        name: the checkpoint's file name.
        method: a key of SELECTION_METHODS (``"cell33"``, ``"auto"``, ``"manual"``, ``"picker"``).

    Raises:
        ValueError: an unknown method.
    """
    if method not in SELECTION_METHODS:
        raise ValueError(f"method must be one of {sorted(SELECTION_METHODS)}, got {method!r}")
    return _join([f"📂 Selected: {name}", f"🔍 Selection Method: {SELECTION_METHODS[method]}", ""])


def render_load_report(
    report: Any, *, validation_loss: float | None = None, vocab_size: int | None = None
) -> str:
    """LOADING MODEL WEIGHTS through NEXT STEPS, from a ``LoadReport``.

    Args:
        report: the ``LoadReport`` that ``load_model_weights`` returned.
        validation_loss: the loaded model's loss on a validation batch, as evidence of training.
        vocab_size: the vocabulary size; a random model's loss is about ln(vocab_size).

    Returns:
        The panels, ending with the closing rule.
    """
    sections = (
        _loading_section(report),
        _partial_section(report),
        _checkpoint_info_section(report),
        _model_info_section(report),
        _preview_section(report),
        _verification_section(report, validation_loss, vocab_size),
        _next_steps_section(),
    )
    return _join([line for section in sections for line in section] + [RULE])


def _loading_section(report: Any) -> list[str]:
    mode = "Evaluation (dropout/batchnorm frozen)" if report.mode == "eval" else "Training"
    return _header("LOADING MODEL WEIGHTS") + [
        f"📂 Loading checkpoint: {safe_text(Path(report.path).name, 120)}",
        "✅ Weights loaded successfully!",
        "",
        f"📍 Device: {report.device}",
        f"🎯 Mode: {mode}",
        "",
    ]


def _partial_section(report: Any) -> list[str]:
    """PARTIAL LOAD (``strict=False`` only): what came from the file, grouped, layers collapsed."""
    plan = getattr(report, "partial", None)
    if plan is None:
        return []
    share = f"{plan.share_from_file:.1%}"
    lines = _header("PARTIAL LOAD") + [
        f"📦 From the file: {share} of the model's parameters ({plan.loaded_params:,} of {plan.total_params:,})",
        "",
    ]
    icons = {"Loaded": "✅", "Resized": "🔁", "Kept": "🟰", "Ignored": "🚫", "Shape": "⚠️ "}
    for title, entries in plan.sections():
        lines.append(f"{icons.get(title.split()[0], '•')} {title}:")
        lines.extend(f"   {safe_text(entry)}" for entry in entries[:_MAX_PARTIAL_LINES])
        if len(entries) > _MAX_PARTIAL_LINES:
            lines.append(f"   ... and {len(entries) - _MAX_PARTIAL_LINES} more")
        lines.append("")
    if getattr(report, "frozen_loaded", 0):
        lines.extend([f"🧊 Frozen: {report.frozen_loaded:,} parameters that came from the file", ""])
    return lines


_MAX_PARTIAL_LINES = 8


def _checkpoint_info_section(report: Any) -> list[str]:
    lines = _header("CHECKPOINT INFO")
    if report.kind == "bare":
        lines.extend(["ℹ️  This file is a bare state_dict: it stores no training progress or metrics.", ""])
    metrics = report.metrics or {}
    return lines + [
        "📊 Training Progress:",
        f"   Epoch: {_number(report.epoch)}",
        f"   Global Step: {_number(report.global_step)}",
        f"   Timestamp: {_timestamp(report.timestamp)}",
        "",
        "📈 Metrics:",
        f"   Train Loss: {_loss(metrics.get('train_loss'))}",
        f"   Val Loss: {_loss(metrics.get('val_loss'))}",
        f"   Learning Rate: {_learning_rate(metrics.get('learning_rate'))}",
        "",
    ]


def _timestamp(value: str | None) -> str:
    """ISO-8601 -> ``2025-01-22 06:54:55``; anything else is shown as it is."""
    if not value:
        return "n/a"
    try:
        return _dt.datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def _learning_rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2e}" if 0 < abs(value) < 5e-7 else f"{value:.6f}"  # 6 decimals would print 0


def _model_info_section(report: Any) -> list[str]:
    return _header("MODEL INFO") + [
        "🧠 Parameters:",
        f"   Total: {report.total_params:,}",
        f"   Trainable: {report.trainable_params:,}",
        f"   Frozen: {report.frozen_params:,}",
        "",
        "💾 Memory:",
        f"   Model Size: {report.model_size_mb:,.2f} MB ({report.dtype_label})",
        "",
    ]


def _preview_section(report: Any) -> list[str]:
    preview = list(report.architecture_preview)
    lines = _header("ARCHITECTURE PREVIEW") + [f"📐 First {len(preview)} layers:"]
    for number, (name, shape, device) in enumerate(preview, start=1):
        lines.extend([f"   {number}. {name}", f"      Shape: {list(shape)}", f"      Device: {device}", ""])
    remaining = report.named_parameter_count - len(preview)
    if remaining > 0:
        lines.extend([f"   ... and {remaining:,} more layers", ""])
    return lines


def _verification_section(report: Any, validation_loss: float | None, vocab_size: int | None) -> list[str]:
    lines = _header("VERIFICATION") + [f"📦 File: {_KIND_LABELS.get(report.kind, report.kind)}"]
    if report.verified is None:
        lines.append("⏭️  Tensor check skipped (verify=False)")
    elif report.verified:
        lines.append(
            f"✅ Tensors verified: {report.tensors_loaded:,}/{report.tensors_loaded:,} identical to the file"
        )
    else:
        lines.append("❌ Some tensors differ from the file after loading (see the warnings below)")
    if report.integrity_checked is not None:
        lines.append(
            "🔒 Checksums: the weights' bytes match the CRC-32s stored when the file was saved"
            if report.integrity_checked
            else "🔒 Checksums: none in this file (pre-zip legacy format), not compared"
        )
    stripped = ", ".join(repr(p) for p in report.stripped_prefixes) or "none"
    lines.append(f"✂️  Wrapper prefixes stripped: {stripped}")
    lines.extend(f"🔧 {safe_text(note)}" for note in getattr(report, "source_notes", ()))
    if report.model_was_wrapped:
        lines.append("🎁 The model is wrapped (DataParallel/DDP/torch.compile): loaded into the inner model")
    lines.append(f"🔁 Dtype conversions: {_conversions(report.dtype_conversions)}")
    if not report.nonfinite_tensors:
        lines.append("✅ No NaN or Inf values")
    lines.append(f"⏱️  Loaded in {_duration(report.elapsed_s)}")
    lines.append("")
    lines.extend(_evidence_lines(report, validation_loss, vocab_size))
    if report.warnings:
        lines.extend(["⚠️  Warnings:"] + [f"   - {warning}" for warning in report.warnings] + [""])
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _conversions(conversions: Sequence[tuple[str, str, str]]) -> str:
    """``[(name, "float16", "float32"), ...]`` -> ``148 tensors float16 → float32``."""
    if not conversions:
        return "none"
    counts: dict[tuple[str, str], int] = {}
    for _, source, target in conversions:
        counts[(source, target)] = counts.get((source, target), 0) + 1
    parts = [f"{n:,} {'tensor' if n == 1 else 'tensors'} {s} → {t}" for (s, t), n in counts.items()]
    return "; ".join(parts)


def _evidence_lines(report: Any, validation_loss: float | None, vocab_size: int | None) -> list[str]:
    """The validation-batch loss against the recorded val_loss and a random model's ln(vocab)."""
    if validation_loss is None:
        return []
    lines = ["📉 Are the weights trained?", f"   Validation batch loss: {validation_loss:.4f}"]
    recorded = (report.metrics or {}).get("val_loss")
    lines.append(f"   Recorded val_loss:     {_loss(recorded)}")
    if not vocab_size:
        return lines + [""]
    random_loss = math.log(vocab_size)
    lines.append(f"   Random model (ln {vocab_size:,}): {random_loss:.4f}")
    if validation_loss < 0.9 * random_loss:
        lines.append("   ✅ Well below a random model's loss: the weights are trained")
    else:
        lines.append("   ⚠️  Close to a random model's loss: these weights look untrained")
    return lines + [""]


def _next_steps_section() -> list[str]:
    return _header("NEXT STEPS") + [
        "💡 Model is ready for:",
        "   → Inference on test data",
        "   → Evaluation/benchmarking",
        "   → Feature extraction",
        "",
        "🔄 To resume training:",
        "   model.train()  # Switch to training mode",
        "   # Then run training loop",
        "",
    ]


def render_model_not_found() -> str:
    """Scenario 1 of the design: ``model`` does not exist yet."""
    return _join(
        [
            "❌ Model instance not found!",
            "",
            "💡 To fix:",
            "   1. Run Cell 13 (Initialize Model) to create 'model' variable",
            "   2. Re-run this cell",
            "",
            RULE,
        ]
    )


def render_no_checkpoints(checkpoint_dir: str | Path, skipped: Sequence[tuple[Any, str]] = ()) -> str:
    """Scenario 2 of the design: the folder holds no valid checkpoint.

    Args:
        checkpoint_dir: the folder that was searched.
        skipped: ``(path, reason)`` for files that were found but could not be read.
    """
    folder = str(checkpoint_dir)
    folder = folder if folder.endswith("/") else folder + "/"
    lines = [f"❌ No checkpoints found in {folder}", ""]
    if skipped:
        lines.append(
            f"⚠️  {len(skipped)} unreadable {'file was' if len(skipped) == 1 else 'files were'} skipped:"
        )
        lines.extend(
            f"   - {safe_text(Path(path).name, 120)}: {safe_text(reason)}" for path, reason in skipped
        )
        lines.append("")
    return _join(
        lines
        + [
            "💡 To fix:",
            "   1. Run Cell 32 (Run Training) to create checkpoints",
            "   2. Or run Cell 33 (Checkpoint Recovery) to specify different directory",
            "",
            RULE,
        ]
    )


def render_architecture_mismatch(error: ArchitectureMismatchError) -> str:
    """Scenario 3 of the design, with a readable diff instead of a raw exception."""
    details = error.diff.format() if getattr(error, "diff", None) is not None else error.problem
    lines = [
        "❌ ERROR: Model architecture mismatch!",
        "",
        "💡 Possible causes:",
        "   1. Model config in Cell 13 differs from training config",
        "   2. Checkpoint is from a different model architecture",
        "   3. Model definition was modified after training",
        "",
        "🔧 To fix:",
        "   1. Verify config in Cell 13 matches training config",
        "   2. Check model definition hasn't changed",
        "   3. Try loading a different checkpoint",
        "",
        "📋 Technical details:",
        f"   Checkpoint: {_file_name(error)}",
    ]
    lines.extend(f"   {line}" for line in details.splitlines())
    lines.extend(["   Your model was not changed: the load stopped before copying anything.", "", RULE])
    return _join(lines)


def _file_name(error: CheckpointError) -> str:
    return safe_text(Path(error.path).name, 120) if error.path else "(unknown)"


def render_corrupt_checkpoint(error: CorruptCheckpointError, next_candidate_name: str | None) -> str:
    """A damaged (or weightless) file, naming the next valid checkpoint to try.

    Args:
        error: the ``CorruptCheckpointError`` (or ``NotACheckpointError``) raised by the loader.
        next_candidate_name: the next valid checkpoint in the listing, or None.
    """
    weightless = isinstance(error, NotACheckpointError)
    title = "File holds no model weights!" if weightless else "Checkpoint file is damaged!"
    lines = [
        f"❌ ERROR: {title}",
        "",
        f"📂 File: {_file_name(error)}",
        f"   {safe_text(error.problem, None)}",
        "",
    ]
    if error.fix:
        lines.extend(["💡 What this means:", f"   {error.fix}", ""])
    lines.append("🔧 To fix:")
    if next_candidate_name:
        lines.extend(
            [
                f"   1. Load the next valid checkpoint: {next_candidate_name}",
                "      (set the MANUAL_CHECKPOINT line in this cell to that file; uncomment it if needed)",
                "   2. Or move the damaged file out of the checkpoint folder, then re-run Cell 33",
                "      (Checkpoint Recovery) and this cell: both then skip it",
            ]
        )
    else:
        lines.append("   1. Run Cell 32 (Run Training) to write a new checkpoint")
    return _join(lines + ["", RULE])


def render_unsafe_checkpoint(error: UnsafeCheckpointError) -> str:
    """A file refused because unpickling it could run code, and how to opt in for a trusted one."""
    path = error.path or "path/to/checkpoint.pt"
    return _join(
        [
            "❌ ERROR: Checkpoint refused: loading it could run code!",
            "",
            f"📂 File: {_file_name(error)}",
            f"   {safe_text(error.problem, None)}",
            "",
            "💡 Why:",
            "   This file holds pickled Python objects, not only tensors and numbers.",
            "   Unpickling them can run any code the file's author chose.",
            "   Checkpoints written by Cell 32 (Run Training) never need this.",
            "",
            "🔧 To fix:",
            "   1. Load a checkpoint written by this notebook instead",
            "   2. Only if you trust where this file came from, opt in for it alone:",
            "      in this cell (Cell 34) tick TRUST_PICKLE and re-run it, or in code:",
            f"      load_model_weights(model, {str(path)!r}, trust_pickle=True)",
            "",
            RULE,
        ]
    )


def render_device_failure(error: Exception, device: Any, *, loaded: bool = False) -> str:
    """The model could not be put on ``device`` (no GPU for DEVICE='cuda', CUDA out of memory).

    Args:
        loaded: the weights were loaded and only the move failed (``ModelMoveError``): the
            model holds the checkpoint's weights on its previous device.
    """
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    state = (
        "ℹ️  The file is fine and the weights were loaded; only the move failed (the model stayed put)."
        if loaded
        else "ℹ️  The file was not the problem: nothing was loaded and the model is unchanged."
    )
    return _join(
        [
            f"❌ ERROR: The model could not be loaded onto {device or 'the default device'}!",
            "",
            f"📋 {type(error).__name__}: {safe_text(first)}",
            state,
            "",
            "🔧 To fix:",
            "   1. Set DEVICE = 'cpu' in Cell 3 (Parameters), then re-run Cells 5, 13 and this cell",
            "   2. Or free GPU memory: Runtime → Restart session, then run Cells 1-13 and this cell",
            "",
            RULE,
        ]
    )


def render_load_error(error: CheckpointError, next_candidate_name: str | None = None) -> str:
    """The panel for any error ``load_model_weights`` raises (dispatches on its type)."""
    if isinstance(error, ArchitectureMismatchError):
        return render_architecture_mismatch(error)
    if isinstance(error, UnsafeCheckpointError):
        return render_unsafe_checkpoint(error)
    if isinstance(error, CorruptCheckpointError):
        return render_corrupt_checkpoint(error, next_candidate_name)
    lines = ["❌ ERROR: The checkpoint could not be loaded!", "", f"📂 File: {_file_name(error)}"]
    lines.append(f"   {safe_text(error.problem, None)}")
    if error.fix:
        lines.extend(["", "🔧 To fix:", f"   {error.fix}"])
    if next_candidate_name:
        lines.append(f"   Or load the next valid checkpoint: {next_candidate_name}")
    return _join(lines + ["", RULE])
