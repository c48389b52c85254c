"""mismatch_error: the error of the one fitting step shared by the loader and resume."""

from __future__ import annotations

from tests.engine.loading_fixtures import tiny_gpt
from utils.training.engine.errors import ArchitectureMismatchError
from utils.training.engine.matching import mismatch_error
from utils.training.engine.state_dict_diff import compare_state_dicts

from .helpers import TinyNet


class TestMismatchError:
    def _error(self, **kwargs):
        stored, model = tiny_gpt(n_layer=1), tiny_gpt()
        diff = compare_state_dicts(stored.state_dict(), model.state_dict())
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
        diff = compare_state_dicts(TinyNet(width=4).state_dict(), TinyNet().state_dict())
        error = mismatch_error("x.pt", diff, None, TinyNet())
        assert (
            error.diff.config_differences == [] and "pick a checkpoint trained with this model" in error.fix
        )
