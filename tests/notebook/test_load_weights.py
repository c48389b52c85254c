"""Cell 34's orchestration: prerequisites, selection priority, panels, errors without tracebacks."""

from __future__ import annotations

from pathlib import Path

import torch

from utils.model import GPT, GPTConfig
from utils.notebook.load_weights import (
    Selection,
    choose_checkpoint,
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
