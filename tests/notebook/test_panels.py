"""panels: Cell 34's text, compared with the approved design's layout line by line."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from utils.notebook.panels import (
    RULE,
    render_architecture_mismatch,
    render_available_checkpoints,
    render_corrupt_checkpoint,
    render_load_error,
    render_load_report,
    render_model_not_found,
    render_no_checkpoints,
    render_selection,
    render_unsafe_checkpoint,
)
from utils.training.engine.errors import (
    ArchitectureMismatchError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.loading import LoadReport
from utils.training.engine.record import CheckpointRecord
from utils.training.engine.state_dict_diff import StateDictDiff

NAME_9 = "checkpoint_epoch0009_step000009_20251122_065455.pt"
NAME_8 = "checkpoint_epoch0008_step000008_20251122_064812.pt"
# The design's "Output Structure", first block (its rule is 71 characters).
DESIGN_AVAILABLE = f"""{RULE}
AVAILABLE CHECKPOINTS
{RULE}

→ [0] Epoch  9 | Step    9 | train_loss=0.4231 | val_loss=0.3876
     {NAME_9}

  [1] Epoch  8 | Step    8 | train_loss=0.4512 | val_loss=0.3921
     {NAME_8}
"""


def _info(epoch, step, train, val, name):
    """A stand-in for a CheckpointRecord (the panels only read these attributes)."""
    return SimpleNamespace(epoch=epoch, global_step=step, train_loss=train, val_loss=val, name=name)


DESIGN_CHECKPOINTS = [_info(9, 9, 0.4231, 0.3876, NAME_9), _info(8, 8, 0.4512, 0.3921, NAME_8)]


def _gpt2_report(**changes) -> LoadReport:
    """The design's example: GPT-2 small on cuda:0 (148 named parameter tensors)."""
    preview = [
        ("transformer.wte.weight", [50257, 768], "cuda:0"),
        ("transformer.wpe.weight", [1024, 768], "cuda:0"),
        ("transformer.h.0.ln_1.weight", [768], "cuda:0"),
        ("transformer.h.0.ln_1.bias", [768], "cuda:0"),
        ("transformer.h.0.attn.c_attn.weight", [2304, 768], "cuda:0"),
    ]
    record_fields = dict(
        kind="full",
        epoch=9,
        global_step=9,
        timestamp="2025-01-22T06:54:55",
        metrics={"train_loss": 0.4231, "val_loss": 0.3876, "learning_rate": 0.00005},
    )
    record_fields.update({k: changes.pop(k) for k in list(changes) if k in record_fields})
    report = LoadReport(
        path=f"/content/checkpoints/{NAME_9}",
        record=CheckpointRecord(path=Path(f"/content/checkpoints/{NAME_9}"), **record_fields),
        device="cuda:0",
        verified=True,
        tensors_loaded=148,
        total_params=124_439_808,
        trainable_params=124_439_808,
        frozen_params=0,
        model_size_mb=124_439_808 * 4 / 2**20,
        architecture_preview=preview,
        named_parameter_count=148,
        elapsed_s=0.08,
    )
    return dataclasses.replace(report, **changes)


def _block(text: str, title: str) -> list[str]:
    """The lines of one titled section, from its title to the next rule pair."""
    lines = text.splitlines()
    start = lines.index(title) + 2
    end = next(i for i in range(start, len(lines)) if lines[i] == RULE)
    return lines[start:end]


class TestRenderAvailableCheckpoints:
    def test_matches_the_design(self):
        assert render_available_checkpoints(DESIGN_CHECKPOINTS, 0) == DESIGN_AVAILABLE

    def test_arrow_marks_the_selected_entry_only(self):
        lines = render_available_checkpoints(DESIGN_CHECKPOINTS, 1).splitlines()
        assert lines[4].startswith("  [0]") and lines[7].startswith("→ [1]")

    def test_missing_losses_show_na(self):
        text = render_available_checkpoints([_info(None, None, None, None, "bare.pt")], None)
        assert "  [0] Epoch n/a | Step  n/a | train_loss=n/a | val_loss=n/a" in text.splitlines()

    def test_long_lists_are_cut_but_keep_the_selected_entry(self):
        many = [_info(i, i, 1.0, 1.0, f"c{i}.pt") for i in range(14)]
        text = render_available_checkpoints(many, 12)
        assert "→ [12]" in text and "[11]" not in text and "... and 3 more checkpoints" in text

    def test_empty_list(self):
        assert "(none)" in render_available_checkpoints([], None)


class TestRenderSelection:
    @pytest.mark.parametrize(
        "method, label",
        [
            ("cell33", "From Cell 33 (Checkpoint Recovery)"),
            ("auto", "Auto-selected best (lowest val_loss)"),
            ("manual", "Manual override"),
            ("picker", "Picked in the widget (PICKER)"),
        ],
    )
    def test_names_the_file_and_the_rule(self, method, label):
        assert render_selection(NAME_9, method) == f"📂 Selected: {NAME_9}\n🔍 Selection Method: {label}\n"

    def test_unknown_method_is_refused(self):
        with pytest.raises(ValueError, match="cell33"):
            render_selection(NAME_9, "guess")


class TestRenderLoadReport:
    def test_sections_in_the_design_order(self):
        titles = [line for line in render_load_report(_gpt2_report()).splitlines() if line.isupper()]
        assert titles == [
            "LOADING MODEL WEIGHTS",
            "CHECKPOINT INFO",
            "MODEL INFO",
            "ARCHITECTURE PREVIEW",
            "VERIFICATION",
            "NEXT STEPS",
        ]

    @pytest.mark.parametrize(
        "checked, line",
        [
            (True, "🔒 Checksums: the weights' bytes match the CRC-32s stored when the file was saved"),
            (False, "🔒 Checksums: none in this file (pre-zip legacy format), not compared"),
            (None, None),
        ],
    )
    def test_the_checksum_line_says_what_was_compared(self, checked, line):
        report = _gpt2_report()
        report.integrity_checked = checked
        checksum_lines = [x for x in render_load_report(report).splitlines() if x.startswith("🔒")]
        assert checksum_lines == ([line] if line else [])

    def test_loading_and_checkpoint_info_match_the_design(self):
        text = render_load_report(_gpt2_report())
        assert _block(text, "LOADING MODEL WEIGHTS") == [
            "",
            f"📂 Loading checkpoint: {NAME_9}",
            "✅ Weights loaded successfully!",
            "",
            "📍 Device: cuda:0",
            "🎯 Mode: Evaluation (dropout/batchnorm frozen)",
            "",
        ]
        assert _block(text, "CHECKPOINT INFO")[1:] == [
            "📊 Training Progress:",
            "   Epoch: 9",
            "   Global Step: 9",
            "   Timestamp: 2025-01-22 06:54:55",
            "",
            "📈 Metrics:",
            "   Train Loss: 0.4231",
            "   Val Loss: 0.3876",
            "   Learning Rate: 0.000050",
            "",
        ]

    def test_model_info_uses_thousands_separators(self):
        assert _block(render_load_report(_gpt2_report()), "MODEL INFO")[1:] == [
            "🧠 Parameters:",
            "   Total: 124,439,808",
            "   Trainable: 124,439,808",
            "   Frozen: 0",
            "",
            "💾 Memory:",
            "   Model Size: 474.70 MB (FP32)",
            "",
        ]

    def test_architecture_preview_then_remaining_count(self):
        block = _block(render_load_report(_gpt2_report()), "ARCHITECTURE PREVIEW")
        assert block[1:6] == [
            "📐 First 5 layers:",
            "   1. transformer.wte.weight",
            "      Shape: [50257, 768]",
            "      Device: cuda:0",
            "",
        ]
        assert block[-2:] == ["   ... and 143 more layers", ""]

    def test_next_steps_and_closing_rule_match_the_design(self):
        text = render_load_report(_gpt2_report())
        assert _block(text, "NEXT STEPS")[1:] == [
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
        assert text.endswith("\n" + RULE)

    def test_verification_lists_prefixes_conversions_and_warnings(self):
        report = _gpt2_report(
            stripped_prefixes=["module."],
            dtype_conversions=[("a", "float16", "float32"), ("b", "float16", "float32")],
            nonfinite_tensors=["transformer.h.0.ln_1.weight"],
            warnings=["1 tensors hold NaN or Inf values: transformer.h.0.ln_1.weight"],
        )
        block = _block(render_load_report(report), "VERIFICATION")
        assert "✅ Tensors verified: 148/148 identical to the file" in block and "⏱️  Loaded in 80 ms" in block
        assert "✂️  Wrapper prefixes stripped: 'module.'" in block
        assert "🔁 Dtype conversions: 2 tensors float16 → float32" in block
        assert "   - 1 tensors hold NaN or Inf values: transformer.h.0.ln_1.weight" in block
        assert "✅ No NaN or Inf values" not in block

    def test_validation_loss_is_compared_with_record_and_random_model(self):
        text = render_load_report(_gpt2_report(), validation_loss=0.4012, vocab_size=256)
        assert "   Validation batch loss: 0.4012" in text and "   Recorded val_loss:     0.3876" in text
        assert "   Random model (ln 256): 5.5452" in text and "the weights are trained" in text
        assert "look untrained" in render_load_report(_gpt2_report(), validation_loss=5.5, vocab_size=256)

    def test_bare_state_dict_shows_na_and_says_why(self):
        text = render_load_report(
            _gpt2_report(kind="bare", epoch=None, global_step=None, timestamp=None, metrics={})
        )
        assert "   Epoch: n/a" in text and "   Val Loss: n/a" in text and "bare state_dict" in text


class TestRenderModelNotFound:
    def test_matches_the_design(self):
        assert render_model_not_found() == "\n".join(
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


class TestRenderNoCheckpoints:
    def test_matches_the_design(self):
        assert render_no_checkpoints("./checkpoints") == "\n".join(
            [
                "❌ No checkpoints found in ./checkpoints/",
                "",
                "💡 To fix:",
                "   1. Run Cell 32 (Run Training) to create checkpoints",
                "   2. Or run Cell 33 (Checkpoint Recovery) to specify different directory",
                "",
                RULE,
            ]
        )

    def test_names_the_files_it_skipped(self):
        text = render_no_checkpoints(
            Path("/drive/ckpts"), skipped=[(Path("/drive/ckpts/a.pt"), "empty file")]
        )
        assert "in /drive/ckpts/" in text and "   - a.pt: empty file" in text


def _mismatch() -> ArchitectureMismatchError:
    diff = StateDictDiff(
        missing=[f"transformer.h.{i}.w" for i in (6, 7)],
        config_differences=["n_layer: checkpoint 6, model 8"],
        rebuild_hint="model = GPT(GPTConfig(n_layer=6))",
        model_names=tuple(f"transformer.h.{i}.w" for i in range(8)),
    )
    return ArchitectureMismatchError(f"/c/{NAME_9}", "does not fit", diff=diff)


class TestRenderArchitectureMismatch:
    def test_design_text_then_readable_technical_details(self):
        lines = render_architecture_mismatch(_mismatch()).splitlines()
        assert lines[:13] == [
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
        ]
        assert (
            "     transformer.h.{6,7}.* (2 tensors)" in lines
            and "     n_layer: checkpoint 6, model 8" in lines
        )
        assert "     model = GPT(GPTConfig(n_layer=6))" in lines
        assert lines[-1] == RULE and "Your model was not changed" in lines[-3]


class TestRenderCorruptCheckpoint:
    def test_names_the_file_and_the_next_candidate(self):
        error = CorruptCheckpointError(f"/c/{NAME_9}", "is truncated: its end is missing", fix="pick another")
        text = render_corrupt_checkpoint(error, NAME_8)
        assert "❌ ERROR: Checkpoint file is damaged!" in text and f"📂 File: {NAME_9}" in text
        assert f"   1. Load the next valid checkpoint: {NAME_8}" in text and text.endswith(RULE)
        assert "set the MANUAL_CHECKPOINT line in this cell to that file" in text

    def test_without_a_candidate_points_to_training(self):
        error = NotACheckpointError("/c/x.pt", "holds a list, not model weights")
        text = render_corrupt_checkpoint(error, None)
        assert "File holds no model weights!" in text and "Run Cell 32 (Run Training)" in text


class TestRenderUnsafeCheckpoint:
    def test_explains_the_risk_and_the_opt_in(self):
        error = UnsafeCheckpointError("/c/evil.pt", "needs `posix.system` to be unpickled")
        text = render_unsafe_checkpoint(error)
        assert "could run code" in text and "needs `posix.system`" in text
        assert "      load_model_weights(model, '/c/evil.pt', trust_pickle=True)" in text.splitlines()
        assert "tick TRUST_PICKLE" in text  # the cell's own checkbox, not only the library call


class TestRenderLoadError:
    def test_dispatches_on_the_error_type(self):
        assert render_load_error(_mismatch()).startswith("❌ ERROR: Model architecture mismatch!")
        assert "could run code" in render_load_error(UnsafeCheckpointError("/e.pt", "refused"))
        assert "damaged" in render_load_error(CorruptCheckpointError("/e.pt", "empty"), NAME_8)

    def test_other_errors_show_problem_fix_and_candidate(self):
        error = CheckpointNotFoundError("/c/typo.pt", "does not exist", fix="check the path")
        text = render_load_error(error, NAME_8)
        assert "   does not exist" in text and "   check the path" in text and NAME_8 in text
