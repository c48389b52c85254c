"""Our exports, read back: the safetensors pair (kind "safetensors") and the Hugging Face folder."""

from __future__ import annotations

import json

import pytest
import torch

from utils.notebook.export import export_safetensors
from utils.training.engine import ArchitectureMismatchError, build_model_from_checkpoint, load_model_weights
from utils.training.engine.hf_export import export_hugging_face
from utils.training.engine.sources import read_record

from .conftest import OUR_SETTINGS, logits, our_gpt


class TestSafetensorsExportSource:
    def test_loads_with_its_config_and_rebuilds_the_tied_head(self, tmp_path, tokens):
        model = our_gpt(activation="gelu")
        exported = export_safetensors(model, tmp_path)
        record = read_record(exported["weights"])
        assert (record.kind, record.source) == ("safetensors", "header")
        assert record.model_config == {**OUR_SETTINGS, "bias": True, "activation": "gelu"}
        rebuilt, report = build_model_from_checkpoint(exported["weights"], "cpu")
        assert report.kind == "safetensors"
        assert torch.equal(logits(rebuilt, tokens), logits(model, tokens))
        assert any("rebuilt from" in note for note in report.source_notes)

    def test_without_its_config_the_shapes_and_the_head_count_say_it(self, tmp_path, tokens):
        model = our_gpt(activation="gelu")
        exported = export_safetensors(model, tmp_path)
        exported["config"].unlink()
        with pytest.raises(ArchitectureMismatchError, match="attention heads"):
            build_model_from_checkpoint(exported["weights"], "cpu")
        rebuilt, _ = build_model_from_checkpoint(exported["weights"], "cpu", n_head=2)
        assert torch.equal(logits(rebuilt, tokens), logits(model, tokens))


class TestExportHuggingFace:
    @pytest.mark.parametrize(
        ("activation", "bias", "hf_name"),
        [("gelu_tanh", True, "gelu_new"), ("gelu", True, "gelu"), ("gelu", False, "gelu")],
    )
    def test_transformers_loads_it_with_our_logits(self, tmp_path, tokens, activation, bias, hf_name):
        from transformers import GPT2LMHeadModel

        model = our_gpt(activation=activation, bias=bias)
        exported = export_hugging_face(model, tmp_path / "hf")
        assert exported.verified and exported.config["activation_function"] == hf_name
        assert json.loads((tmp_path / "hf" / "config.json").read_text())["activation_function"] == hf_name
        hf_model = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
        torch.testing.assert_close(logits(hf_model, tokens), logits(model, tokens), rtol=0, atol=1e-5)

    def test_read_back_through_the_engine_as_huggingface(self, tmp_path, tokens):
        model = our_gpt()
        export_hugging_face(model, tmp_path / "hf")
        fresh = our_gpt(dropout=0.0)
        with torch.no_grad():
            fresh.transformer.wte.weight.zero_()
        assert load_model_weights(fresh, tmp_path / "hf", "cpu").kind == "huggingface"
        assert torch.equal(logits(fresh, tokens), logits(model, tokens))

    def test_a_model_without_a_gpt_config_is_refused(self, tmp_path):
        with pytest.raises(TypeError, match="needs this notebook's GPT"):
            export_hugging_face(torch.nn.Linear(2, 2), tmp_path / "hf")
