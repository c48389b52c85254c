"""Hugging Face's names vs ours: the Conv1D orientation decides, never the names alone; shard indexes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tests.engine.loading_fixtures import assert_unchanged, snapshot
from utils.training.engine import CorruptCheckpointError, load_model_weights
from utils.training.engine.sources import hf_folder, read_record
from utils.training.engine.sources.base import TensorSpec
from utils.training.engine.sources.hf_folder import MAX_SHARDS, weight_files
from utils.training.engine.sources.hf_layout import hf_layout_of, is_our_trunk

from .conftest import logits, our_gpt


def _specs(**shapes) -> dict[str, TensorSpec]:
    return {name.replace("__", "."): TensorSpec(shape, torch.float32) for name, shape in shapes.items()}


BASE_CONV1D = _specs(
    wte__weight=(64, 16), h__0__attn__c_attn__weight=(16, 48), h__0__mlp__c_fc__weight=(16, 64)
)
BASE_LINEAR = _specs(
    wte__weight=(64, 16), h__0__attn__c_attn__weight=(48, 16), h__0__mlp__c_fc__weight=(64, 16)
)


class TestHfLayoutOf:
    def test_base_names_with_conv1d_weights_are_hugging_faces(self):
        assert hf_layout_of(BASE_CONV1D) == "base"

    def test_base_names_with_linear_weights_are_not(self):
        """torch.save(our_gpt.transformer.state_dict()): GPT2Model's names, our orientation."""
        assert hf_layout_of(BASE_LINEAR) is None

    def test_prefixed_names_go_by_the_orientation_too(self):
        conv1d = {f"transformer.{name}": spec for name, spec in BASE_CONV1D.items()}
        linear = {f"transformer.{name}": spec for name, spec in BASE_LINEAR.items()}
        assert (hf_layout_of(conv1d), hf_layout_of(linear)) == ("lm", None)

    def test_a_mask_buffer_does_not_make_linear_weights_hugging_faces(self):
        """nanoGPT without flash attention saves transformer.h.N.attn.bias, in Linear layout."""
        specs = {f"transformer.{name}": spec for name, spec in BASE_LINEAR.items()}
        specs["transformer.h.0.attn.bias"] = TensorSpec((1, 1, 16, 16), torch.float32)
        assert hf_layout_of(specs) is None


class TestIsOurTrunk:
    def test_only_our_transformer_submodule_in_linear_layout(self):
        assert is_our_trunk(BASE_LINEAR)
        assert not is_our_trunk(BASE_CONV1D)
        assert not is_our_trunk({**BASE_LINEAR, "lm_head.weight": TensorSpec((64, 16), torch.float32)})


class TestOurTrunkFiles:
    def test_a_torch_file_is_not_read_as_hugging_faces(self, tmp_path):
        """Before: claimed as GPT2Model, strict=False loaded the square attn.c_proj transposed."""
        source, target = our_gpt(), our_gpt()
        with torch.no_grad():
            for parameter in source.parameters():
                parameter.normal_()
        path = tmp_path / "trunk.pt"
        torch.save(source.transformer.state_dict(), path)
        assert read_record(path).kind != "huggingface"
        before = snapshot(target)
        report = load_model_weights(target, path, "cpu", strict=False)
        assert "transformer.h.0.attn.c_proj.weight" not in report.partial.loaded
        assert_unchanged(target, before)

    def test_a_safetensors_file_loads_with_the_prefix_added(self, tmp_path, tokens):
        source = our_gpt()
        with torch.no_grad():
            for parameter in source.parameters():
                parameter.normal_(0.0, 0.3)
        path = tmp_path / "trunk.safetensors"
        save_file({k: v.contiguous() for k, v in source.transformer.state_dict().items()}, path)
        model = our_gpt(activation="gelu_tanh")
        report = load_model_weights(model, path, "cpu")
        assert report.kind == "safetensors"
        assert any("'transformer.' added" in note for note in report.source_notes)
        torch.testing.assert_close(logits(model, tokens), logits(source, tokens), rtol=0, atol=0)


class _CountingEntries(tuple):
    """A folder listing that counts membership tests (each one is a scan of the tuple)."""

    lookups = 0

    def __contains__(self, item):
        type(self).lookups += 1
        return super().__contains__(item)


class TestWeightFiles:
    def _index(self, folder, weight_map):
        folder.mkdir()
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        return folder

    def test_shards_are_looked_up_in_a_set_not_the_listing(self, tmp_path):
        folder = self._index(tmp_path / "f", {f"t{i}": f"s{i}.safetensors" for i in range(2_000)})
        entries = _CountingEntries(["model.safetensors.index.json", *(f"other{i}" for i in range(2_000))])
        _CountingEntries.lookups = 0
        with pytest.raises(CorruptCheckpointError, match=r"names 2,000 shard\(s\) that the folder lacks: s0"):
            weight_files(folder, entries)
        assert _CountingEntries.lookups <= len(hf_folder.WEIGHT_FILES)  # finding the index; no shard scan

    def test_more_distinct_shards_than_a_model_has_are_refused(self, tmp_path):
        weight_map = {f"t{i}": f"s{i}" for i in range(MAX_SHARDS + 1)}
        folder = self._index(tmp_path / "f", weight_map)
        with pytest.raises(
            CorruptCheckpointError, match=r"refused: names 10,001 distinct shard files, more than the 10,000"
        ):
            weight_files(folder, ("model.safetensors.index.json",))

    def test_present_shards_in_the_index_order(self, tmp_path):
        folder = self._index(tmp_path / "f", {"a": "s2", "b": "s1", "c": "s2"})
        assert weight_files(folder, ("model.safetensors.index.json", "s1", "s2")) == [
            folder / "s2",
            folder / "s1",
        ]
