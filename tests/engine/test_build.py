"""build_model_from_checkpoint: a file's settings are claims, checked on the meta device before anything is allocated."""

from __future__ import annotations

import pytest
import torch

from tests.engine.loading_fixtures import tiny_gpt
from utils.model.gpt import GPT
from utils.training.engine import ArchitectureMismatchError, build, save_checkpoint
from utils.training.engine.build import (
    build_model_from_checkpoint,
    check_model_fits,
    checked_model_config,
    infer_model_config,
)


@pytest.fixture
def built_on(monkeypatch):
    """The device of every GPT that build.py constructs (meta: no memory; cpu: allocated)."""
    devices = []

    def recording(config):
        model = GPT(config)
        devices.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(build, "GPT", recording)
    return devices


def _saved(tmp_path, model, **model_config):
    config = {"model": {**model.config.to_dict(), **model_config}}
    return save_checkpoint(tmp_path, model, epoch=0, global_step=1, metrics={"val_loss": 1.0}, config=config)


def _bare(tmp_path, state):
    path = tmp_path / "bare.pt"
    torch.save(state, path)
    return path


class TestBuildModelFromCheckpoint:
    def test_a_file_that_fits_is_built_and_loaded(self, tmp_path, built_on):
        source = tiny_gpt(1)
        model, report = build_model_from_checkpoint(_saved(tmp_path, source), "cpu")
        assert model.config == source.config and report.verified
        assert built_on == ["meta", "cpu"]

    def test_settings_that_disagree_with_the_tensors_are_refused_before_allocating(self, tmp_path, built_on):
        path = _saved(tmp_path, tiny_gpt(1), vocab_size=100_000)  # the tensors have 256 rows
        with pytest.raises(
            ArchitectureMismatchError,
            match=r"(?s)vocab_size: the settings say 100,000, the file's tensors show 256\); nothing was built"
            r".*transformer.wte.weight: checkpoint \[256, 64\] vs model \[100000, 64\]"
            r".*build_model_from_checkpoint\(.*vocab_size=256\)",
        ):
            build_model_from_checkpoint(path, "cpu")
        assert built_on == ["meta"]

    def test_a_size_over_the_bound_is_refused_before_any_model(self, tmp_path, built_on):
        path = _saved(tmp_path, tiny_gpt(1), vocab_size=2**50)
        with pytest.raises(
            ArchitectureMismatchError,
            match=r"refused: the model settings ask for vocab_size=1,125,899,906,842,624, more than the 16,777,216",
        ):
            build_model_from_checkpoint(path, "cpu")
        assert built_on == []

    def test_a_stray_block_number_is_not_a_layer_count(self, tmp_path, built_on):
        state = dict(tiny_gpt(1).state_dict())
        state["transformer.h.20000.x"] = torch.zeros(1)
        with pytest.raises(
            ArchitectureMismatchError,
            match=r"layer count cannot be read .* a tensor of block 20000 \(.* 1,000 layers\)",
        ):
            build_model_from_checkpoint(_bare(tmp_path, state), "cpu", n_head=2)
        assert built_on == []

    def test_a_gap_in_the_block_numbers_is_refused(self, tmp_path, built_on):
        state = dict(tiny_gpt(1).state_dict())  # blocks 0 and 1
        state["transformer.h.5.x"] = torch.zeros(1)
        with pytest.raises(
            ArchitectureMismatchError, match=r"blocks 0, 1, 5 are stored, but not block\(s\) 2, 3, 4: a gap"
        ):
            build_model_from_checkpoint(_bare(tmp_path, state), "cpu", n_head=2)
        assert built_on == []


class TestCheckedModelConfig:
    def test_settings_from_shapes_with_the_head_count(self, tmp_path, built_on):
        source = tiny_gpt(1)
        config, notes = checked_model_config(_bare(tmp_path, source.state_dict()), n_head=2)
        assert config == source.config
        assert any("n_layer=2" in note for note in notes) and built_on == ["meta"]


class TestInferModelConfig:
    def test_a_stated_layer_count_does_not_need_contiguous_blocks(self, tmp_path):
        """The meta check then names the stray tensor (unexpected), instead of the count."""
        state = dict(tiny_gpt(1).state_dict())
        state["transformer.h.7.x"] = torch.zeros(1)
        settings, _ = infer_model_config(_bare(tmp_path, state), n_head=2, n_layer=2)
        assert settings["n_layer"] == 2


class TestCheckModelFits:
    def test_a_fitting_config_passes_and_another_is_refused(self, tmp_path):
        source = tiny_gpt(1)
        path = _saved(tmp_path, source)
        check_model_fits(path, source.config)
        with pytest.raises(
            ArchitectureMismatchError, match=r"n_layer: the settings say 3, the file's tensors show 2"
        ):
            check_model_fits(path, tiny_gpt(1, n_layer=3).config)
