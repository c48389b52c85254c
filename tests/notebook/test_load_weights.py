"""Cell 34's orchestration: prerequisites, selection priority, panels, errors without tracebacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from utils.model import GPT, GPTConfig
from utils.notebook.load_weights import (
    Selection,
    choose_checkpoint,
    load_selection,
    load_weights_cell,
    resolve_checkpoint_dir,
)
from utils.training.engine.recovery import list_checkpoints
from utils.training.loop import evaluate

from .conftest import TINY


def _run(namespace, **kwargs):
    printed: list[str] = []
    report = load_weights_cell(namespace, out=printed.append, **kwargs)
    return report, "\n".join(printed)


def _strip_timing(text: str) -> str:
    """The panels without the load's duration (the one value that differs between two loads)."""
    return re.sub(r"Loaded in .*", "Loaded in <time>", text)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


class TestChooseCheckpoint:
    def test_manual_override_wins(self, checkpoint_dir):
        listing = list_checkpoints(checkpoint_dir)
        manual = listing[2].path
        chosen = choose_checkpoint(listing, {"checkpoint_path": str(listing[1].path)}, manual)
        assert chosen == Selection(manual, "manual", 2)

    def test_cell_33_choice_beats_the_best(self, checkpoint_dir):
        listing = list_checkpoints(checkpoint_dir)
        chosen = choose_checkpoint(listing, {"checkpoint_path": str(listing[1].path)})
        assert (chosen.method, chosen.index) == ("cell33", 1)

    def test_auto_selects_the_best(self, checkpoint_dir):
        listing = list_checkpoints(checkpoint_dir)
        chosen = choose_checkpoint(listing, results=None)
        assert (chosen.method, chosen.index) == ("auto", 0)
        assert "epoch0001" in chosen.path.name

    def test_nothing_to_choose(self):
        assert choose_checkpoint([], results="not a dict") is None


class TestResolveCheckpointDir:
    def test_priority(self, tmp_path):
        namespace = {"results": {"checkpoint_dir": "a"}, "CHECKPOINT_DIR": "b"}
        assert resolve_checkpoint_dir(namespace, "x") == Path("x")
        assert resolve_checkpoint_dir(namespace) == Path("a")
        assert resolve_checkpoint_dir({"CHECKPOINT_DIR": "b"}) == Path("b")
        assert resolve_checkpoint_dir({}) == Path("./checkpoints")


class TestLoadWeightsCell:
    def test_model_not_found(self, checkpoint_dir):
        report, text = _run({"CHECKPOINT_DIR": str(checkpoint_dir)})
        assert report is None
        assert text.startswith("❌ Model instance not found!")
        assert "Run Cell 13 (Initialize Model)" in text

    def test_no_checkpoints(self, tmp_path, tiny_model):
        report, text = _run({"model": tiny_model, "CHECKPOINT_DIR": str(tmp_path / "empty")})
        assert report is None
        assert f"❌ No checkpoints found in {tmp_path / 'empty'}/" in text
        assert "Run Cell 32 (Run Training)" in text and "Traceback" not in text

    def test_auto_selected_best_loads(self, checkpoint_dir, tiny_model, val_batches):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir), "val_batches": val_batches}
        report, text = _run(namespace, device="cpu")
        assert report is not None and report.epoch == 1
        assert "🔍 Selection Method: Auto-selected best" in text
        assert "→ [0] Epoch  1" in text
        assert "✅ Weights loaded successfully!" in text and "Validation batch loss" in text

    def test_validation_loss_uses_evaluate_in_the_sessions_precision(
        self, checkpoint_dir, tiny_model, val_batches, monkeypatch
    ):
        calls = []

        def spy(model, batches, **kwargs):
            calls.append((len(batches), kwargs.get("amp_dtype")))
            return evaluate(model, batches, **kwargs)

        monkeypatch.setattr("utils.notebook.load_weights.evaluate", spy)
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir), "val_batches": val_batches * 2,
                     "amp_dtype": torch.bfloat16}  # fmt: skip
        _, text = _run(namespace, device="cpu")
        expected = evaluate(tiny_model, val_batches[:1], amp_dtype=torch.bfloat16)
        assert calls == [(1, torch.bfloat16)] and f"Validation batch loss: {expected:.4f}" in text

    def test_panels_in_the_designs_order(self, checkpoint_dir, tiny_model):
        _, text = _run({"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir)}, device="cpu")
        titles = ["AVAILABLE CHECKPOINTS", "🔍 Selection Method", "LOADING MODEL WEIGHTS", "CHECKPOINT INFO",
                  "MODEL INFO", "ARCHITECTURE PREVIEW", "NEXT STEPS"]  # fmt: skip
        positions = [text.index(title) for title in titles]
        assert positions == sorted(positions)

    def test_cell_33_results_choose_the_file(self, checkpoint_dir, tiny_model):
        chosen = sorted(checkpoint_dir.glob("*.pt"))[2]
        namespace = {
            "model": tiny_model,
            "results": {"checkpoint_path": str(chosen), "checkpoint_dir": str(checkpoint_dir)},
        }
        report, text = _run(namespace, device="cpu")
        assert Path(report.path) == chosen
        assert "From Cell 33 (Checkpoint Recovery)" in text

    def test_manual_override_loads_that_file(self, checkpoint_dir, tiny_model):
        chosen = sorted(checkpoint_dir.glob("*.pt"))[0]
        report, text = _run({"model": tiny_model}, manual_path=str(chosen), device="cpu")
        assert report.epoch == 0 and "🔍 Selection Method: Manual override" in text

    def test_mismatch_prints_panel_and_leaves_model_unchanged(self, checkpoint_dir):
        other = GPT(GPTConfig(**{**TINY, "n_layer": 2}))
        before = _state(other)
        report, text = _run({"model": other, "CHECKPOINT_DIR": str(checkpoint_dir)}, device="cpu")
        assert report is None
        assert "❌ ERROR: Model architecture mismatch!" in text and "Traceback" not in text
        assert "n_layer" in text
        assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())

    def test_corrupt_selected_file_names_the_next_valid_checkpoint(self, checkpoint_dir, tiny_model):
        listing = list_checkpoints(checkpoint_dir)
        broken = checkpoint_dir / "checkpoint_epoch0009_step000090_20250101_000009.pt"
        broken.write_bytes(listing[0].path.read_bytes()[:200])
        report, text = _run(
            {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir)}, manual_path=str(broken)
        )
        assert report is None
        assert broken.name in text and f"Load the next valid checkpoint: {listing[0].name}" in text

    def test_damaged_weights_are_caught_by_their_checksums(self, checkpoint_dir, tiny_model):
        listing = list_checkpoints(checkpoint_dir)
        data = bytearray(listing[0].path.read_bytes())
        weight = torch.load(listing[0].path, weights_only=True)["model_state_dict"]["transformer.wpe.weight"]
        data[data.find(weight.numpy().tobytes()) + 100] ^= 0xFF  # still loads with torch.load
        listing[0].path.write_bytes(bytes(data))
        before = _state(tiny_model)
        report, text = _run({"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir)})
        assert report is None and "CRC-32" in text and "transformer.wpe.weight" in text
        assert f"Load the next valid checkpoint: {listing[1].name}" in text and "Traceback" not in text
        assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())

    def test_missing_cell_33_file_names_the_next_candidate(self, checkpoint_dir, tiny_model):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir),
                     "results": {"checkpoint_path": str(checkpoint_dir / "gone.pt")}}  # fmt: skip
        report, text = _run(namespace)
        assert report is None and "gone.pt" in text and "Traceback" not in text

    def test_device_failure_prints_a_panel_not_a_traceback(self, checkpoint_dir, tiny_model, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        before = _state(tiny_model)
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir), "device": "cuda"}
        report, text = _run(namespace)
        assert report is None and "❌ ERROR: The model could not be loaded onto cuda!" in text
        assert "Set DEVICE = 'cpu' in Cell 3" in text and "Traceback" not in text
        assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())


def _weights_equal(model, path) -> bool:
    saved = torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]
    return all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


@pytest.fixture
def front_end(monkeypatch):
    """A widget front end is attached (as in JupyterLab or Colab); shown widgets are recorded."""
    shown = []
    monkeypatch.setattr("utils.notebook.load_weights.can_show_picker", lambda namespace: True)
    monkeypatch.setattr("utils.notebook.picker.display", shown.append)
    return shown


def _picker_text(checkpoint_picker) -> str:
    return "".join(o["text"] for o in checkpoint_picker.output.outputs)


class TestLoadWeightsCellPicker:
    """load_weights_cell(..., picker=True): the text path first, then the widget where it can show."""

    def test_without_a_front_end_the_text_path_runs_exactly(self, checkpoint_dir, tiny_model, val_batches):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir), "val_batches": val_batches}
        plain, plain_text = _run(dict(namespace), device="cpu")
        result, text = _run(namespace, device="cpu", picker=True)  # pytest: plain Python, no kernel
        assert result is None and _strip_timing(text) == _strip_timing(plain_text)
        assert namespace["load_report"].path == plain.path

    def test_shows_the_listing_with_the_selected_one_preselected(self, front_end, checkpoint_dir, tiny_model):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir)}
        checkpoint_picker, text = _run(namespace, device="cpu", picker=True)
        listing = list_checkpoints(checkpoint_dir)
        assert front_end == [checkpoint_picker.widget] and "✅ Weights loaded successfully!" in text
        assert checkpoint_picker.dropdown.value == 0 and len(checkpoint_picker.dropdown.options) == len(
            listing
        )
        assert checkpoint_picker.report is namespace["load_report"]
        assert Path(checkpoint_picker.report.path) == listing[0].path

    def test_a_click_loads_the_chosen_file_and_updates_load_report(
        self, front_end, checkpoint_dir, tiny_model
    ):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir)}
        checkpoint_picker, _ = _run(namespace, device="cpu", picker=True)
        listing = list_checkpoints(checkpoint_dir)
        checkpoint_picker.dropdown.value = 2
        checkpoint_picker.button.click()
        assert _weights_equal(tiny_model, listing[2].path)
        assert Path(namespace["load_report"].path) == listing[2].path
        assert checkpoint_picker.report is namespace["load_report"]

    def test_a_click_prints_the_panels_the_text_path_prints(self, front_end, checkpoint_dir, tiny_model):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir)}
        checkpoint_picker, _ = _run(namespace, device="cpu", picker=True)
        checkpoint_picker.dropdown.value = 1
        checkpoint_picker.button.click()
        listing = list_checkpoints(checkpoint_dir)
        printed: list[str] = []
        load_selection(
            namespace, Selection(listing[1].path, "picker", 1), listing, device="cpu", out=printed.append
        )
        clicked = _picker_text(checkpoint_picker)
        assert _strip_timing(clicked) == _strip_timing("\n".join(printed) + "\n")
        assert "→ [1]" in clicked and "🔍 Selection Method: Picked in the widget (PICKER)" in clicked

    def test_a_failed_click_changes_nothing(self, front_end, checkpoint_dir, tiny_model):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir)}
        checkpoint_picker, _ = _run(namespace, device="cpu", picker=True)
        listing = list_checkpoints(checkpoint_dir)
        loaded, before = namespace["load_report"], _state(tiny_model)
        listing[2].path.write_bytes(listing[2].path.read_bytes()[:300])  # damaged after the listing
        checkpoint_picker.dropdown.value = 2
        checkpoint_picker.button.click()
        assert listing[2].name in _picker_text(checkpoint_picker) and "Traceback" not in _picker_text(
            checkpoint_picker
        )
        assert namespace["load_report"] is loaded and checkpoint_picker.report is loaded
        assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())

    def test_a_click_loads_into_the_current_model(self, front_end, checkpoint_dir, tiny_model, tiny_config):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(checkpoint_dir)}
        checkpoint_picker, _ = _run(namespace, device="cpu", picker=True)
        namespace["model"] = GPT(tiny_config)  # Cell 13 run again after the picker was shown
        checkpoint_picker.button.click()
        assert _weights_equal(namespace["model"], list_checkpoints(checkpoint_dir)[0].path)

    def test_nothing_to_pick_shows_no_widget(self, front_end, tmp_path, tiny_model):
        namespace = {"model": tiny_model, "CHECKPOINT_DIR": str(tmp_path / "empty"), "load_report": "old"}
        result, text = _run(namespace, picker=True)
        assert result is None and front_end == [] and namespace["load_report"] is None
        assert "❌ No checkpoints found" in text

    def test_a_failed_first_load_still_offers_the_others(self, front_end, checkpoint_dir):
        other = GPT(GPTConfig(**{**TINY, "n_layer": 2}))
        namespace = {"model": other, "CHECKPOINT_DIR": str(checkpoint_dir)}
        checkpoint_picker, text = _run(namespace, device="cpu", picker=True)
        assert "❌ ERROR: Model architecture mismatch!" in text
        assert checkpoint_picker.report is None and namespace["load_report"] is None


class TestLoadSelection:
    def test_loads_the_selected_file_with_its_method_and_mark(self, checkpoint_dir, tiny_model):
        listing = list_checkpoints(checkpoint_dir)
        printed: list[str] = []
        report = load_selection(
            {"model": tiny_model}, Selection(listing[1].path, "picker", 1), listing, device="cpu",
            out=printed.append,
        )  # fmt: skip
        text = "\n".join(printed)
        assert Path(report.path) == listing[1].path and _weights_equal(tiny_model, listing[1].path)
        assert "→ [1]" in text and "Picked in the widget (PICKER)" in text and "NEXT STEPS" in text

    def test_without_a_model_prints_the_designs_panel(self, checkpoint_dir):
        listing = list_checkpoints(checkpoint_dir)
        printed: list[str] = []
        report = load_selection({}, Selection(listing[0].path, "auto", 0), listing, out=printed.append)
        assert report is None and printed[0].startswith("❌ Model instance not found!")
