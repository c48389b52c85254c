"""PyTorch Lightning's .ckpt (written by Trainer.fit with ModelCheckpoint): loaded, listed, rebuilt."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.engine.loading_fixtures import assert_unchanged, snapshot
from utils.model import GPT, GPTConfig
from utils.training.engine import (
    ArchitectureMismatchError,
    build_model_from_checkpoint,
    list_checkpoints,
    load_model_weights,
)
from utils.training.engine.sources import read_record

from .conftest import LIGHTNING_SETTINGS, logits

TOKENS = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(2))


class TestLoadLightning:
    def test_logits_equal_the_lightning_modules(self, lightning_run):
        path, module = lightning_run
        model = GPT(GPTConfig(**LIGHTNING_SETTINGS))
        report = load_model_weights(model, path, "cpu")
        assert report.kind == "lightning"
        assert torch.equal(logits(model, TOKENS), logits(module.model, TOKENS))
        notes = " ".join(report.source_notes)
        assert "prefix 'model.'" in notes and "left out 1 entries" in notes  # the module's own buffer

    def test_other_settings_are_refused_and_the_model_is_unchanged(self, lightning_run):
        model = GPT(GPTConfig(**{**LIGHTNING_SETTINGS, "n_layer": 2}))
        before = snapshot(model)
        with pytest.raises(ArchitectureMismatchError, match="n_layer: checkpoint 1, model 2"):
            load_model_weights(model, lightning_run[0], "cpu")
        assert_unchanged(model, before)


class TestLightningRecord:
    def test_epoch_step_monitored_score_and_hyperparameters(self, lightning_run):
        path, module = lightning_run
        record = read_record(path)
        assert (record.kind, record.epoch, record.global_step) == ("lightning", 0, 2)
        assert record.val_loss == pytest.approx(module.trainer.callback_metrics["val_loss"].item())
        assert record.model_config == LIGHTNING_SETTINGS
        assert record.config["lightning"]["monitor"] == "val_loss"
        assert record.config["lightning"]["version"]
        assert any("ModelCheckpoint monitored 'val_loss'" in note for note in record.notes)
        assert record.has_optimizer

    def test_listed_with_its_kind(self, lightning_run, tmp_path):
        shutil.copy(lightning_run[0], tmp_path / "epoch=0-step=2.ckpt")
        (entry,) = list_checkpoints(tmp_path)
        assert (entry.kind, entry.global_step) == ("lightning", 2)


class TestBuildFromLightning:
    def test_hyperparameters_give_the_settings(self, lightning_run):
        path, module = lightning_run
        model, report = build_model_from_checkpoint(path, "cpu")
        assert model.config == GPTConfig(**LIGHTNING_SETTINGS)
        assert torch.equal(logits(model, TOKENS), logits(module.model, TOKENS))

    def test_without_hyperparameters_the_head_count_must_be_given(self, lightning_run, tmp_path):
        checkpoint = torch.load(lightning_run[0], weights_only=True)
        del checkpoint["hyper_parameters"]
        path = tmp_path / "no-hparams.ckpt"
        torch.save(checkpoint, path)
        with pytest.raises(ArchitectureMismatchError, match=r"(?s)attention heads.*n_head=\.\.\."):
            build_model_from_checkpoint(path, "cpu")
        model, _ = build_model_from_checkpoint(path, "cpu", n_head=2)
        assert torch.equal(logits(model, TOKENS), logits(lightning_run[1].model, TOKENS))
