"""The manifest records the settings; the safetensors export stores tied weights once and reads back equal."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from utils.notebook.export import (
    export_hugging_face_lines,
    export_safetensors,
    settings_from,
    write_run_manifest,
)


class TestSettingsFrom:
    def test_only_upper_case_plain_values(self):
        namespace = {
            "EPOCHS": 3,
            "DEVICE": "cpu",
            "model": object(),
            "DEVICE_OBJ": torch.device("cpu"),
            "_X": 1,
        }
        assert settings_from(namespace) == {"EPOCHS": 3, "DEVICE": "cpu"}


class TestWriteRunManifest:
    def test_json_with_settings_and_facts(self, tmp_path):
        path = write_run_manifest(
            tmp_path / "o" / "m.json", {"EPOCHS": 3}, device=torch.device("cpu"), resume_from=None
        )
        data = json.loads(path.read_text())
        assert data["settings"] == {"EPOCHS": 3}
        assert data["facts"] == {"device": "cpu", "resume_from": None}
        assert data["versions"]["torch"] == torch.__version__


class TestExportSafetensors:
    def test_round_trip_with_tied_weights(self, tmp_path, tiny_model):
        out = export_safetensors(tiny_model, tmp_path)
        assert out["verified"] and out["weights"].exists()
        assert json.loads(out["config"].read_text())["n_embd"] == 16
        stored = load_file(out["weights"])
        assert len(stored) == out["tensors"] == len(list(tiny_model.parameters()))

    def test_compiled_wrapper_is_unwrapped(self, tmp_path, tiny_model):
        wrapper = torch.nn.Module()
        wrapper._orig_mod = tiny_model
        assert export_safetensors(wrapper, tmp_path)["verified"]


class TestExportHuggingFaceLines:
    def test_writes_the_folder_and_says_how_to_use_it(self, tmp_path, tiny_model):
        lines = export_hugging_face_lines(tiny_model, tmp_path / "huggingface")
        config = json.loads((tmp_path / "huggingface" / "config.json").read_text())
        assert (config["model_type"], config["n_embd"], config["activation_function"]) == ("gpt2", 16, "gelu")
        assert lines[1].startswith("✅") and "from_pretrained" in lines[2]
        assert "lm_head.weight" not in load_file(tmp_path / "huggingface" / "model.safetensors")
