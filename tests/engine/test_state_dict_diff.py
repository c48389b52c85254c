"""state_dict_diff: the structured comparison, its collapsed text, config lines and the rebuild hint."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.engine.loading_fixtures import tiny_gpt
from utils.training.engine.build import build_model_from_checkpoint
from utils.training.engine.state_dict_diff import (
    StateDictDiff,
    collapse_names,
    compare_state_dicts,
    config_differences,
    model_config_dict,
    rebuild_hint,
)


def _gpt_sd(n_layer: int, n_embd: int) -> dict[str, torch.Tensor]:
    return tiny_gpt(n_layer=n_layer, n_embd=n_embd).state_dict()


class TestCompareStateDicts:
    def test_identical_state_dicts_are_ok(self):
        sd = _gpt_sd(2, 64)
        diff = compare_state_dicts(sd, sd)
        assert diff.ok and diff.summary() == "no differences"

    def test_missing_unexpected_and_shapes(self):
        diff = compare_state_dicts(
            {"a": torch.zeros(2), "b": torch.zeros(3)}, {"a": torch.zeros(4), "c": torch.zeros(1)}
        )
        assert (diff.missing, diff.unexpected) == (["c"], ["b"])
        assert diff.shape_mismatches == [("a", (2,), (4,))]
        assert not diff.ok

    def test_float_dtype_difference_is_a_conversion_not_a_failure(self):
        diff = compare_state_dicts({"w": torch.zeros(2, dtype=torch.bfloat16)}, {"w": torch.zeros(2)})
        assert diff.ok and diff.dtype_conversions == [("w", "bfloat16", "float32")]

    def test_a_tied_tensor_is_one_conversion_not_one_per_name(self):
        shared = torch.zeros(2)  # lm_head.weight is wte.weight: two names, one tensor
        checkpoint = {name: torch.zeros(2, dtype=torch.float16) for name in ("wte", "lm_head")}
        diff = compare_state_dicts(checkpoint, {"wte": shared, "lm_head": shared})
        assert diff.dtype_conversions == [("wte", "float16", "float32")]

    @pytest.mark.parametrize(
        "value, found",
        [
            (torch.zeros(2, dtype=torch.int64), "int64"),
            (torch.zeros(2, dtype=torch.bool), "bool"),
            ([0.0, 0.0], "a list, not a tensor"),
            (torch.empty(2, device="meta"), "meta tensor"),
            (torch.zeros(2).to_sparse(), "sparse_coo"),
        ],
    )
    def test_values_that_cannot_be_copied_are_dtype_mismatches(self, value, found):
        diff = compare_state_dicts({"w": value}, {"w": torch.zeros(2)})
        assert not diff.ok
        assert diff.dtype_mismatches[0][0] == "w" and found in diff.dtype_mismatches[0][1]

    def test_float_checkpoint_into_integer_buffer_is_a_mismatch(self):
        diff = compare_state_dicts({"n": torch.zeros(1)}, {"n": torch.zeros(1, dtype=torch.int64)})
        assert diff.dtype_mismatches == [("n", "float32", "int64")]


class TestStateDictDiffFormat:
    def test_whole_missing_layers_collapse(self):
        diff = compare_state_dicts(_gpt_sd(6, 64), _gpt_sd(12, 64))
        text = diff.format()
        assert "Missing from the checkpoint (72 tensors the model needs):" in text
        assert "  transformer.h.{6..11}.* (72 tensors)" in text.splitlines()

    def test_shape_mismatches_collapse_across_layers(self):
        diff = compare_state_dicts(_gpt_sd(6, 64), _gpt_sd(6, 32))
        lines = diff.format(max_lines=100).splitlines()
        assert "  transformer.h.{0..5}.attn.c_attn.weight: checkpoint [192, 64] vs model [96, 32]" in lines
        assert len(lines) == 1 + 2 + 12 + 3  # title, wte + wpe, 12 kinds per layer, ln_f (2) + lm_head

    def test_sections_are_capped(self):
        diff = compare_state_dicts(_gpt_sd(6, 64), _gpt_sd(6, 32))
        lines = diff.format(max_lines=4).splitlines()
        assert lines[-1].startswith("  ... and ") and len(lines) == 5

    def test_config_lines_and_rebuild_hint_are_appended(self):
        diff = dataclasses.replace(
            StateDictDiff(missing=["x"]),
            config_differences=["n_layer: checkpoint 12, model 6"],
            rebuild_hint="model = X",
        )
        assert diff.format().splitlines()[-4:] == [
            "Config differences:",
            "  n_layer: checkpoint 12, model 6",
            "Build a matching model:",
            "  model = X",
        ]

    def test_summary_counts_each_problem(self):
        diff = compare_state_dicts(_gpt_sd(6, 64), _gpt_sd(12, 32))
        assert diff.summary().startswith("tensors: 72 missing, ")


class TestCollapseNames:
    def test_partial_layers_group_by_suffix_with_ranges(self):
        names = [f"h.{i}.w" for i in (0, 1, 2, 5, 7, 8)]
        universe = names + [f"h.{i}.b" for i in range(10)]
        assert collapse_names(names, universe) == ["h.{0..2,5,7,8}.w"]

    def test_single_layer_stays_bare_and_plain_names_pass_through(self):
        assert collapse_names(["h.3.w", "lm_head.weight"], ["h.3.w", "h.3.b", "lm_head.weight"]) == [
            "h.3.w",
            "lm_head.weight",
        ]

    def test_top_level_numbered_modules(self):
        universe = [f"{i}.weight" for i in range(4)] + [f"{i}.bias" for i in range(4)]
        assert collapse_names(["0.weight", "0.bias", "1.weight", "1.bias"], universe) == [
            "{0,1}.* (4 tensors)"
        ]


class TestConfigDifferences:
    def test_lines_name_checkpoint_and_model_values(self):
        ckpt, model = {"n_layer": 12, "n_embd": 64, "bias": True}, {"n_layer": 6, "n_embd": 64, "bias": False}
        assert config_differences(ckpt, model) == [
            "n_layer: checkpoint 12, model 6",
            "bias: checkpoint True, model False",
        ]

    def test_keys_present_on_one_side_only(self):
        assert config_differences({"a": "x"}, {"b": 1}) == [
            "a: checkpoint 'x', model (not set)",
            "b: checkpoint (not set), model 1",
        ]

    @pytest.mark.parametrize("ckpt, model", [(None, {"a": 1}), ({"a": 1}, None), ({}, {})])
    def test_unknown_config_gives_no_lines(self, ckpt, model):
        assert config_differences(ckpt, model) == []


class TestRebuildHint:
    def test_the_line_builds_a_model_that_fits_the_checkpoint(self, tmp_path):
        source = tiny_gpt(n_layer=3)
        path = tmp_path / "three layers.pt"
        torch.save(
            {"model_state_dict": source.state_dict(), "config": {"model": source.config.to_dict()}}, path
        )
        scope = {"build_model_from_checkpoint": build_model_from_checkpoint}
        exec(rebuild_hint(path), scope)
        assert compare_state_dicts(source.state_dict(), scope["model"].state_dict()).ok

    def test_a_path_with_quotes_stays_one_python_string(self):
        assert rebuild_hint("it's.pt") == """model, load_report = build_model_from_checkpoint("it's.pt")"""


class TestModelConfigDict:
    def test_gpt_config_via_to_dict(self):
        assert model_config_dict(tiny_gpt())["n_layer"] == 2

    def test_dataclass_mapping_and_missing_configs(self):
        @dataclasses.dataclass
        class Config:
            width: int = 3

        model = torch.nn.Linear(1, 1)
        assert model_config_dict(model) is None
        model.config = Config()
        assert model_config_dict(model) == {"width": 3}
        model.config = {"width": 4}
        assert model_config_dict(model) == {"width": 4}
