"""groups: a tensor name -> its layer and its kind, and a group's relative change."""

from __future__ import annotations

import math

import pytest

from utils.model import GPT, config_for_preset
from utils.training.analysis.groups import combine, kind_of, layer_of, layer_order, relative


class TestLayerOf:
    @pytest.mark.parametrize(
        ("name", "layer"),
        [
            ("transformer.wte.weight", "embeddings"),
            ("transformer.wpe.weight", "embeddings"),
            ("transformer.h.0.ln_1.weight", "block 0"),
            ("transformer.h.11.mlp.c_proj.bias", "block 11"),
            ("transformer.ln_f.bias", "final norm"),
            ("lm_head.weight", "output head"),
            ("model.layers.3.self_attn.q_proj.weight", "block 3"),
            ("model.embed_tokens.weight", "embeddings"),
            ("model.norm.weight", "final norm"),
            ("scale", "other"),
        ],
    )
    def test_names(self, name, layer):
        assert layer_of(name) == layer

    def test_gpt2_small_has_fourteen_layers(self):
        names = [name for name, _ in GPT(config_for_preset("tiny", n_layer=12)).named_parameters()]
        assert len(names) == 148
        assert layer_order(layer_of(n) for n in names) == ["embeddings"] + [
            f"block {i}" for i in range(12)
        ] + ["final norm"]


class TestKindOf:
    @pytest.mark.parametrize(
        ("name", "kind"),
        [
            ("transformer.h.0.attn.c_attn.weight", "attention"),
            ("transformer.h.0.attn.c_proj.bias", "attention"),
            ("transformer.h.0.mlp.c_fc.weight", "MLP"),
            ("transformer.h.0.mlp.c_proj.weight", "MLP"),
            ("transformer.h.0.ln_2.weight", "layer norms"),
            ("transformer.ln_f.weight", "layer norms"),
            ("transformer.wte.weight", "embeddings"),
            ("lm_head.weight", "embeddings"),
            ("model.layers.0.self_attn.o_proj.weight", "attention"),
            ("model.layers.0.mlp.down_proj.weight", "MLP"),
            ("model.layers.0.input_layernorm.weight", "layer norms"),
            ("scale", "other"),
        ],
    )
    def test_names(self, name, kind):
        assert kind_of(name) == kind


class TestLayerOrder:
    def test_input_first_blocks_numerically(self):
        labels = ["final norm", "block 10", "other", "block 2", "embeddings", "output head", "block 2"]
        assert layer_order(labels) == [
            "embeddings",
            "block 2",
            "block 10",
            "final norm",
            "output head",
            "other",
        ]


class TestRelative:
    def test_ratio_zero_and_undefined(self):
        assert relative(1.0, 4.0) == 0.25
        assert relative(0.0, 0.0) == 0.0  # nothing moved
        assert relative(0.5, 0.0) is None  # moved away from all zeros: no ratio


class TestCombine:
    def test_a_group_is_one_vector(self):
        norms = {"a.h.0.x": (3.0, 4.0), "a.h.0.y": (4.0, 3.0), "a.h.1.x": (1.0, 0.0)}
        result = combine(norms, layer_of)
        assert result["block 0"] == pytest.approx(math.sqrt(9 + 16) / math.sqrt(16 + 9))
        assert result["block 1"] is None
