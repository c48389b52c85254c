"""Text generation is reproducible and leaves training's RNG alone; evaluation gives loss and perplexity."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from utils.data import ByteTokenizer
from utils.notebook.inference import (
    compare_samples,
    evaluate_model,
    evaluate_session_model,
    generate_text,
    printable,
)
from utils.training.loop import evaluate


class TestGenerateText:
    def test_same_seed_same_text_and_global_rng_untouched(self, tiny_model):
        rng = torch.get_rng_state()
        a = generate_text(tiny_model, ByteTokenizer(), "Hi", max_new_tokens=10, seed=3)
        b = generate_text(tiny_model, ByteTokenizer(), "Hi", max_new_tokens=10, seed=3)
        assert a == b and a.startswith("Hi") and torch.equal(rng, torch.get_rng_state())

    def test_empty_prompt(self, tiny_model):
        with pytest.raises(ValueError, match="PROMPT"):
            generate_text(tiny_model, ByteTokenizer(), "")


class TestPrintable:
    def test_control_characters_are_replaced(self):
        assert printable("a\x1b[2J\nb\x00") == "a·[2J\nb·"


class TestEvaluateModel:
    def test_loss_and_perplexity(self, tiny_model, val_batches):
        result = evaluate_model(tiny_model, val_batches, recorded_val_loss=1.0)
        assert result.perplexity == pytest.approx(math.exp(result.val_loss))
        assert result.tokens == 32 and "Recorded in the checkpoint: 1.0000" in "\n".join(result.lines())


class TestEvaluateSessionModel:
    def test_uses_the_loaded_checkpoints_val_loss(self, tiny_model, val_batches):
        namespace = {"model": tiny_model, "val_batches": val_batches, "untrained_loss": 5.5,
                     "load_report": SimpleNamespace(metrics={"val_loss": 2.25})}  # fmt: skip
        result = evaluate_session_model(namespace)
        assert (result.recorded_val_loss, result.untrained_loss) == (2.25, 5.5)

    def test_evaluates_in_the_sessions_precision(self, tiny_model, val_batches):
        # the recorded val_loss was computed under Cell 20's autocast: compare like with like
        result = evaluate_session_model(
            {"model": tiny_model, "val_batches": val_batches, "amp_dtype": torch.bfloat16}
        )
        in_bf16 = evaluate(tiny_model, val_batches, amp_dtype=torch.bfloat16)
        assert result.val_loss == in_bf16 != evaluate(tiny_model, val_batches)

    def test_wrapped_model_reports_the_inner_vocab(self, tiny_model, val_batches):
        result = evaluate_session_model(
            {"model": torch.nn.DataParallel(tiny_model), "val_batches": val_batches}
        )
        assert result.vocab_size == 256

    def test_missing_model_names_the_cell(self):
        with pytest.raises(NameError, match="Cell 13"):
            evaluate_session_model({})


class TestCompareSamples:
    def test_identical_text_is_flagged(self):
        assert "not loaded or trained" in compare_samples("ab", "ab", "a")[0]

    def test_different_text_shows_the_untrained_one(self):
        assert "xyz" in "\n".join(compare_samples("aaa", "axyz", "a"))
