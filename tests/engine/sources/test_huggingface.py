"""Hugging Face GPT-2 in every shape: logits equal GPT2LMHeadModel's (1e-5); bad variants refused, model unchanged."""

from __future__ import annotations

import contextlib
import json
import shutil

import pytest
import torch

from tests.engine.loading_fixtures import assert_unchanged, snapshot
from utils.training.engine import (
    ArchitectureMismatchError,
    CorruptCheckpointError,
    NotACheckpointError,
    build_model_from_checkpoint,
    list_checkpoints,
    load_model_weights,
    scan_checkpoints,
)
from utils.training.engine.sources import read_record, safetensors_files

from .conftest import OUR_SETTINGS, logits, our_gpt
from .hf_files import bin_folder, hub_base_file, safetensors_bytes, sharded_folder, torch_state_dict_file


def _assert_same_logits(model, hf_model, tokens):
    torch.testing.assert_close(logits(model, tokens), logits(hf_model, tokens), rtol=0, atol=1e-5)


class TestLoadHuggingFace:
    def test_save_pretrained_folder(self, hf_folder, hf_model, tokens):
        model = our_gpt()
        report = load_model_weights(model, hf_folder, "cpu")
        assert report.kind == "huggingface"
        _assert_same_logits(model, hf_model, tokens)
        notes = " ".join(report.source_notes)
        assert "Conv1D" in notes and "lm_head.weight rebuilt" in notes

    def test_exact_gelu_differs_from_gpt2s_activation(self, hf_folder, hf_model, tokens):
        model = our_gpt(activation="gelu")
        load_model_weights(model, hf_folder, "cpu")  # same weights, another activation: not the same model
        assert not torch.allclose(logits(model, tokens), logits(hf_model, tokens), atol=1e-5)

    def test_sharded_folder(self, hf_folder, hf_model, tokens, tmp_path):
        folder = sharded_folder(hf_folder, tmp_path / "sharded")
        model = our_gpt()
        assert load_model_weights(model, folder, "cpu").kind == "huggingface"
        _assert_same_logits(model, hf_model, tokens)

    def test_pytorch_model_bin_folder_with_legacy_buffers(self, hf_folder, hf_model, tokens, tmp_path):
        folder = bin_folder(hf_folder, hf_model, tmp_path / "bin")
        model = our_gpt()
        report = load_model_weights(model, folder, "cpu")
        _assert_same_logits(model, hf_model, tokens)
        assert any("attention-mask buffer" in note for note in report.source_notes)

    def test_hub_base_layout_safetensors_file(self, hf_model, tokens, tmp_path):
        path = hub_base_file(hf_model, tmp_path / "gpt2.safetensors")
        model = our_gpt()
        assert load_model_weights(model, path, "cpu").kind == "huggingface"
        _assert_same_logits(model, hf_model, tokens)

    @pytest.mark.parametrize("prefixed", [True, False])
    def test_torch_saved_state_dict(self, hf_model, tokens, tmp_path, prefixed):
        path = torch_state_dict_file(hf_model, tmp_path / "hf.pt", prefixed=prefixed)
        model = our_gpt()
        assert load_model_weights(model, path, "cpu").kind == "huggingface"
        _assert_same_logits(model, hf_model, tokens)


def _bad_folder(tmp_path, hf_folder, name, *, config=None, drop=(), index=None):
    folder = tmp_path / name
    shutil.copytree(hf_folder, folder)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    for file in drop:
        (folder / file).unlink()
    if index is not None:
        (folder / "model.safetensors").unlink()
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    return folder


BAD_FOLDERS = [
    ("llama", dict(config={"model_type": "llama", "architectures": ["LlamaForCausalLM"]}),
     ArchitectureMismatchError, r"another architecture: config.json says model_type 'llama' \(LlamaForCausalLM\)"),
    ("relu", dict(config={"model_type": "gpt2", "activation_function": "relu"}),
     ArchitectureMismatchError, "activation_function 'relu'"),
    ("epsilon", dict(config={"model_type": "gpt2", "layer_norm_epsilon": 1e-6}),
     ArchitectureMismatchError, "layer_norm_epsilon other than 1e-5"),
    ("no-weights", dict(drop=("model.safetensors",)), NotACheckpointError, "holds config.json but no weights"),
    ("missing-shard", dict(index={"transformer.wte.weight": "model-00001-of-00002.safetensors"}),
     CorruptCheckpointError, "names 1 shard.* that the folder lacks: model-00001-of-00002"),
    ("outside", dict(index={"transformer.wte.weight": "../secret.safetensors"}),
     CorruptCheckpointError, "not a file of its own folder"),
    ("activation-list", dict(config={"model_type": "gpt2", "activation_function": []}),
     ArchitectureMismatchError, r"has an activation_function that is a JSON array \(\[\]\), not a name"),
    ("activation-object", dict(config={"model_type": "gpt2", "activation_function": {"a": 1}}),
     ArchitectureMismatchError, r"activation_function that is a JSON object \(\{'a': 1\}\)"),
    ("index-list", dict(index={"transformer.wte.weight": ["model.safetensors"]}), CorruptCheckpointError,
     r"maps tensor 'transformer.wte.weight' to \['model.safetensors'\] \(a JSON array\), not a shard file name"),
    ("config-objects", dict(config={"model_type": "gpt2", "x": [{}] * 2_000}), CorruptCheckpointError,
     r"refused: the folder's config.json is not parsed: it holds 2,002 objects and arrays \(at most 1,000\)"),
]  # fmt: skip


class TestBadHuggingFace:
    @pytest.mark.parametrize(
        ("name", "change", "error", "message"), BAD_FOLDERS, ids=[b[0] for b in BAD_FOLDERS]
    )
    def test_refused_clearly_and_the_model_is_unchanged(
        self, hf_folder, tmp_path, name, change, error, message
    ):
        folder = _bad_folder(tmp_path, hf_folder, name, **change)
        model = our_gpt()
        before = snapshot(model)
        with pytest.raises(error, match=message):
            load_model_weights(model, folder, "cpu")
        assert_unchanged(model, before)

    def test_listing_skips_each_with_its_reason(self, hf_folder, tmp_path):
        for name, change, _, _ in BAD_FOLDERS:
            _bad_folder(tmp_path, hf_folder, name, **change)
        shutil.copytree(hf_folder, tmp_path / "good")
        result = scan_checkpoints(tmp_path)
        assert [record.name for record in result.checkpoints] == ["good"]
        reasons = {path.name: reason for path, reason in result.skipped}
        assert set(reasons) == {name for name, *_ in BAD_FOLDERS}
        assert "llama" in reasons["llama"] and "no weights" in reasons["no-weights"]

    def test_a_long_activation_name_is_refused_in_a_short_escaped_message(self, hf_folder, tmp_path):
        """It never reaches the loader's activation warning (which would quote it whole)."""
        config = json.loads((hf_folder / "config.json").read_text())
        folder = _bad_folder(
            tmp_path, hf_folder, "long", config={**config, "activation_function": "\u202e" + "x" * 100_000}
        )
        model = our_gpt()
        before = snapshot(model)
        with pytest.raises(
            ArchitectureMismatchError, match=r"uses activation_function '\\\\u202exxx"
        ) as caught:
            load_model_weights(model, folder, "cpu")
        assert len(str(caught.value)) < 1_000 and "\u202e" not in str(caught.value)
        assert_unchanged(model, before)

    def test_a_header_that_lies_about_offsets(self, tmp_path):
        path = tmp_path / "lying.safetensors"
        header = {"h.0.attn.c_attn.weight": {"dtype": "F32", "shape": [4, 12], "data_offsets": [0, 192]}}
        path.write_bytes(safetensors_bytes(header, b"\0" * 64))  # 64 bytes of data, 192 claimed
        model = our_gpt()
        before = snapshot(model)
        with pytest.raises(CorruptCheckpointError, match="outside the file's 64 bytes of tensor data"):
            load_model_weights(model, path, "cpu")
        assert_unchanged(model, before)


class TestHuggingFaceRecord:
    def test_folder_record_from_config_json(self, hf_folder):
        record = read_record(hf_folder)
        assert (record.kind, record.source, record.tensor_count) == ("huggingface", "config", 28)
        assert record.model_config == {
            **OUR_SETTINGS,
            "dropout": 0.1,
            "bias": True,
            "activation": "gelu_tanh",
        }
        assert record.config["huggingface"]["model_type"] == "gpt2"
        assert record.size_bytes == (hf_folder / "model.safetensors").stat().st_size

    def test_trainer_state_gives_step_epoch_and_eval_loss(self, hf_folder, tmp_path):
        folder = tmp_path / "checkpoint-500"
        shutil.copytree(hf_folder, folder)
        state = {"global_step": 500, "epoch": 1.5, "log_history": [{"eval_loss": 2.5, "step": 250},
                                                                  {"eval_loss": 2.25, "step": 500}]}  # fmt: skip
        (folder / "trainer_state.json").write_text(json.dumps(state))
        record = read_record(folder)
        assert (record.global_step, record.epoch, record.val_loss) == (500, 1, 2.25)

    def test_a_listing_of_the_folder_itself_is_one_entry(self, hf_folder):
        (entry,) = list_checkpoints(hf_folder)
        assert (entry.kind, entry.name) == ("huggingface", hf_folder.name)

    def test_shards_holding_no_tensor_are_refused(self, hf_folder, tmp_path):
        """Before: listed as a Hugging Face checkpoint of 0 tensors (an index over thousands of empty shards)."""
        empty = safetensors_bytes({"__metadata__": {}}, b"")
        folder = _bad_folder(
            tmp_path, hf_folder, "empty", index={f"t{i}": f"s{i}.safetensors" for i in range(3)}
        )
        for i in range(3):
            (folder / f"s{i}.safetensors").write_bytes(empty)
        with pytest.raises(CorruptCheckpointError, match=r"its 3 weight file\(s\) hold no tensor"):
            read_record(folder)

    def test_shards_are_opened_one_at_a_time(self, hf_folder, tmp_path, monkeypatch):
        """A listing never holds every shard open (a crafted index of thousands: 'Too many open files')."""
        folder = sharded_folder(hf_folder, tmp_path / "sharded")
        opened, most = [], []
        real = safetensors_files.open_untrusted

        @contextlib.contextmanager
        def counting(path):
            with real(path) as handle:
                opened.append(path)
                most.append(len(opened))
                try:
                    yield handle
                finally:
                    opened.pop()

        monkeypatch.setattr(safetensors_files, "open_untrusted", counting)
        assert read_record(folder).tensor_count == 28
        assert (len(most), max(most)) == (2, 1)


class TestBuildFromHuggingFace:
    def test_config_json_gives_every_setting(self, hf_folder, hf_model, tokens):
        model, report = build_model_from_checkpoint(hf_folder, "cpu")
        assert (model.config.activation, model.config.block_size) == ("gelu_tanh", 16)
        _assert_same_logits(model, hf_model, tokens)

    def test_a_lone_file_needs_the_head_count(self, hf_model, tokens, tmp_path):
        path = hub_base_file(hf_model, tmp_path / "model.safetensors")
        with pytest.raises(ArchitectureMismatchError, match="attention heads"):
            build_model_from_checkpoint(path, "cpu")
        model, report = build_model_from_checkpoint(path, "cpu", n_head=2)
        assert model.config.activation == "gelu_tanh"
        _assert_same_logits(model, hf_model, tokens)


class TestActivationWarning:
    def test_loading_gpt2_weights_into_an_exact_gelu_model_warns(self, hf_folder):
        report = load_model_weights(our_gpt(activation="gelu"), hf_folder, "cpu")
        assert any("activation 'gelu_tanh', this model 'gelu'" in warning for warning in report.warnings)
        assert not load_model_weights(our_gpt(), hf_folder, "cpu").warnings
