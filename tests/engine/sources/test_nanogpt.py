"""nanoGPT's ckpt.pt: loaded, listed and rebuilt with its own settings; logits equal nanoGPT's forward pass."""

from __future__ import annotations

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

from .nanogpt_files import MODEL_ARGS, TRAIN_CONFIG, nanogpt_state, reference_logits, write_ckpt

TOKENS = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(5))


def _model(**overrides) -> GPT:
    return GPT(GPTConfig(**{**MODEL_ARGS, **overrides})).eval()


class TestLoadNanoGPT:
    @pytest.mark.parametrize("prefix", ["", "_orig_mod."])
    def test_logits_equal_nanogpts_forward_pass(self, tmp_path, prefix):
        state = nanogpt_state()
        path = write_ckpt(tmp_path / "ckpt.pt", state, prefix=prefix)
        model = _model()
        report = load_model_weights(model, path, "cpu")
        assert report.kind == "nanogpt"
        expected = reference_logits(state, MODEL_ARGS, TOKENS)
        torch.testing.assert_close(model(TOKENS)[0].detach(), expected, rtol=1e-5, atol=1e-5)
        assert report.stripped_prefixes == ([prefix] if prefix else [])

    def test_mask_buffers_of_models_without_flash_attention_are_left_out(self, tmp_path):
        state = nanogpt_state(mask_buffers=True)
        path = write_ckpt(tmp_path / "ckpt.pt", state)
        model = _model()
        report = load_model_weights(model, path, "cpu")
        assert any("causal-mask buffer" in note for note in report.source_notes)
        torch.testing.assert_close(model(TOKENS)[0].detach(), reference_logits(state, MODEL_ARGS, TOKENS))

    def test_a_model_of_other_settings_is_refused_and_unchanged(self, tmp_path):
        path = write_ckpt(tmp_path / "ckpt.pt", nanogpt_state())
        model = _model(n_embd=32)
        before = snapshot(model)
        with pytest.raises(ArchitectureMismatchError, match="n_embd: checkpoint 16, model 32"):
            load_model_weights(model, path, "cpu")
        assert_unchanged(model, before)


class TestNanoGPTRecord:
    def test_iter_num_is_the_step_and_best_val_loss_the_val_loss(self, tmp_path):
        path = write_ckpt(tmp_path / "ckpt.pt", nanogpt_state(), iter_num=750, best_val_loss=1.25)
        record = read_record(path)
        assert (record.kind, record.global_step, record.epoch) == ("nanogpt", 750, None)
        assert record.val_loss == pytest.approx(1.25)
        assert record.model_config == {**MODEL_ARGS, "activation": "gelu"}
        assert record.config["nanogpt"]["dataset"] == TRAIN_CONFIG["dataset"]
        assert record.has_optimizer and record.source == "pickle"

    def test_listing_reads_scalars_only(self, tmp_path, monkeypatch):
        from utils.training.engine.torchfile import TorchFile

        write_ckpt(tmp_path / "ckpt.pt", nanogpt_state())
        read = []
        original = TorchFile.tensor
        monkeypatch.setattr(
            TorchFile, "tensor", lambda self, stub: read.append(stub.shape) or original(self, stub)
        )
        (entry,) = list_checkpoints(tmp_path)
        assert entry.kind == "nanogpt" and entry.val_loss == pytest.approx(1.4697)
        assert read == [()]  # best_val_loss, a 0-dim tensor: no weight was read


class TestBuildFromNanoGPT:
    def test_builds_the_model_model_args_describe(self, tmp_path):
        state = nanogpt_state(args={**MODEL_ARGS, "bias": False})
        path = write_ckpt(tmp_path / "ckpt.pt", state, bias=False)
        model, report = build_model_from_checkpoint(path, "cpu")
        assert model.config == GPTConfig(**{**MODEL_ARGS, "bias": False})
        expected = reference_logits(state, {**MODEL_ARGS, "bias": False}, TOKENS)
        torch.testing.assert_close(model(TOKENS)[0].detach(), expected, rtol=1e-5, atol=1e-5)
        assert report.kind == "nanogpt"
