"""match_names and mismatch_error: the one fitting step shared by the loader and resume."""

from __future__ import annotations

import torch

from tests.engine.loading_fixtures import tiny_gpt
from utils.training.engine.errors import ArchitectureMismatchError
from utils.training.engine.matching import match_names, mismatch_error

from .helpers import TinyNet


class TestMatchNames:
    def test_wrapper_prefix_is_stripped_and_the_diff_is_ok(self):
        model_sd = TinyNet().state_dict()
        weights, stripped, diff = match_names({f"module.{k}": v for k, v in model_sd.items()}, model_sd)
        assert (list(weights), stripped, diff.ok) == (list(model_sd), ["module."], True)

    def test_a_real_module_submodule_keeps_its_names(self):
        model_sd = torch.nn.Sequential()
        model_sd.add_module("module", torch.nn.Linear(2, 2))
        model_sd = model_sd.state_dict()
        weights, stripped, diff = match_names(dict(model_sd), model_sd)
        assert (list(weights), stripped, diff.ok) == (list(model_sd), [], True)

    def test_a_mismatch_is_reported_not_raised(self):
        _, _, diff = match_names(TinyNet(width=4).state_dict(), TinyNet().state_dict())
        assert not diff.ok and len(diff.shape_mismatches) == 3  # fc2.bias keeps its shape


class TestMismatchError:
    def _error(self, **kwargs):
        stored, model = tiny_gpt(n_layer=1), tiny_gpt()
        _, _, diff = match_names(stored.state_dict(), model.state_dict())
        config = {"model": stored.config.to_dict()}
        return mismatch_error("/c/x.pt", diff, config, model, **kwargs)

    def test_names_tensors_settings_and_the_rebuild_line(self):
        error = self._error()
        assert isinstance(error, ArchitectureMismatchError) and error.path == "/c/x.pt"
        assert error.diff.config_differences == ["n_layer: checkpoint 1, model 2"]
        assert "Config differences:" in str(error) and "build_model_from_checkpoint('/c/x.pt')" in error.fix

    def test_then_is_appended_to_the_fix(self):
        assert self._error(then="then resume").fix.endswith("; then resume")

    def test_without_a_stored_config(self):
        _, _, diff = match_names(TinyNet(width=4).state_dict(), TinyNet().state_dict())
        error = mismatch_error("x.pt", diff, None, TinyNet())
        assert (
            error.diff.config_differences == [] and "pick a checkpoint trained with this model" in error.fix
        )
