"""The data and model descriptions print the facts a user checks."""

from __future__ import annotations

import torch

from utils.data import ByteTokenizer, EpochBatches, validation_batches
from utils.notebook.data_views import describe_batch, describe_corpus, describe_split, roundtrip_check
from utils.notebook.model_views import (
    config_lines,
    maybe_compile,
    optimizer_lines,
    parameter_table,
    precision_lines,
    schedule_preview,
    settings_table,
)
from utils.training.loop import TrainConfig
from utils.training.optim import build_optimizer, build_scheduler

TEXT = "To be, or not to be: that is the question.\n" * 40


class TestDataViews:
    def test_corpus_and_roundtrip(self):
        assert "1,720 characters" in "\n".join(describe_corpus(TEXT, "x"))
        ok, lines = roundtrip_check(ByteTokenizer(), "héllo")
        assert ok and "5 characters -> 6 tokens" in "\n".join(lines)

    def test_split_and_batch(self):
        tokens = torch.tensor(ByteTokenizer().encode(TEXT))
        assert "train: 1,500" in "\n".join(describe_split(tokens[:1500], tokens[1500:]))
        batches = EpochBatches(tokens, 4, 16, seed=0)
        text = "\n".join(describe_batch(batches, validation_batches(tokens, 4, 16), ByteTokenizer()))
        assert "(4, 16)" in text and "y is x shifted" in text


class TestModelViews:
    def test_config_and_parameter_table(self, tiny_model, tiny_config):
        assert any("n_embd      16" in line for line in config_lines(tiny_config, "test"))
        table = "\n".join(parameter_table(tiny_model))
        total = sum(p.numel() for p in tiny_model.parameters())
        assert f"{total:,}" in table and "tied" in table

    def test_optimizer_and_schedule(self, tiny_model):
        optimizer = build_optimizer(tiny_model, 1e-3, 0.1)
        assert "group 1" in "\n".join(optimizer_lines(optimizer))
        scheduler = build_scheduler(optimizer, 2, 10)
        preview = schedule_preview(scheduler, 10)
        assert len(preview) == 10 and max(preview) == 1e-3 and scheduler.last_epoch == 0

    def test_precision_settings_and_compile(self, tiny_model):
        assert "float32" in precision_lines(None, None, torch.device("cpu"))[0]
        assert any("seed" in line for line in settings_table(TrainConfig()))
        model, message = maybe_compile(tiny_model, True, torch.device("cpu"))
        assert model is tiny_model and "skipped" in message
