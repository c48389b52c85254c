"""Wrapper prefixes: stripped when a wrapper added them, kept when the model's own names carry them."""

from __future__ import annotations

import torch

from utils.training.engine.prefixes import strip_wrapper_prefixes, unwrap_model

from .helpers import TinyNet


class _Wrap(torch.nn.Module):
    """A model whose real submodule is called ``module`` (not a DataParallel wrapper)."""

    def __init__(self) -> None:
        super().__init__()
        self.module = torch.nn.Linear(3, 2)


class TestStripWrapperPrefixes:
    def test_stacked_prefixes_are_removed_in_order(self):
        clean, stripped = strip_wrapper_prefixes({"module._orig_mod.w": 1, "module._orig_mod.b": 2})
        assert (clean, stripped) == ({"w": 1, "b": 2}, ["module.", "_orig_mod."])

    def test_a_prefix_not_shared_by_every_key_stays(self):
        assert strip_wrapper_prefixes({"module.w": 1, "b": 2}) == ({"module.w": 1, "b": 2}, [])

    def test_the_models_own_prefix_is_kept(self):
        raw = _Wrap().state_dict()
        clean, stripped = strip_wrapper_prefixes(raw, model_keys=raw.keys())
        assert (list(clean), stripped) == (["module.weight", "module.bias"], [])

    def test_only_the_wrappers_prefix_goes_when_the_model_has_its_own(self):
        model_keys = list(_Wrap().state_dict())
        raw = {f"module.{name}": 0 for name in model_keys}  # a DataParallel copy of _Wrap
        clean, stripped = strip_wrapper_prefixes(raw, model_keys=model_keys)
        assert (list(clean), stripped) == (model_keys, ["module."])

    def test_non_string_keys_are_left_alone(self):
        assert strip_wrapper_prefixes({1: "x"}) == ({1: "x"}, [])


class TestUnwrapModel:
    def test_data_parallel_and_plain(self):
        net = TinyNet()
        assert unwrap_model(torch.nn.DataParallel(net)) is net and unwrap_model(net) is net

    def test_a_real_module_submodule_is_not_a_wrapper(self):
        wrap = _Wrap()
        assert unwrap_model(wrap) is wrap
