"""The GPT model: nanoGPT names, the GPT-2 parameter count, forward/backward, generation."""

from __future__ import annotations

import pytest
import torch

from utils.model import GPT, PRESETS, GPTConfig, ParameterCounts, config_for_preset, count_parameters

_BLOCK_NAMES = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                "mlp.c_proj.weight", "mlp.c_proj.bias")  # fmt: skip
NANOGPT_GPT2_NAMES = [
    "transformer.wte.weight",
    "transformer.wpe.weight",
    *(f"transformer.h.{i}.{name}" for i in range(12) for name in _BLOCK_NAMES),
    "transformer.ln_f.weight",
    "transformer.ln_f.bias",
]


@pytest.fixture(scope="module")
def gpt2_on_meta() -> GPT:
    with torch.device("meta"):  # shapes only: no 500 MB allocation
        return GPT(config_for_preset("gpt2"))


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(config_for_preset("tiny", **overrides))


TINY_SETTINGS = dict(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)


class TestGPTConfig:
    def test_round_trip_through_dict(self):
        config = config_for_preset("tiny")
        assert GPTConfig.from_dict(config.to_dict()) == config

    def test_missing_keys_take_defaults(self):
        assert GPTConfig.from_dict({"n_layer": 2}) == GPTConfig(n_layer=2)

    def test_unknown_keys_are_named(self):
        with pytest.raises(ValueError, match=r"unknown keys \['n_experts'\]"):
            GPTConfig.from_dict({"n_layer": 2, "n_experts": 8})

    def test_rejects_heads_that_do_not_divide_the_width(self):
        with pytest.raises(ValueError, match="divisible by n_head"):
            GPTConfig(n_embd=100, n_head=3)

    def test_to_dict_holds_plain_values(self):
        assert all(isinstance(v, (int, float, bool, str)) for v in GPTConfig().to_dict().values())

    def test_activation_is_exact_gelu_unless_asked(self):
        old = {k: v for k, v in GPTConfig().to_dict().items() if k != "activation"}  # a config from before
        assert GPTConfig.from_dict(old).activation == "gelu"
        with pytest.raises(ValueError, match="activation must be one of"):
            GPTConfig(activation="relu")

    def test_tanh_gelu_is_the_approximation(self):
        torch.manual_seed(0)
        exact = GPT(GPTConfig(**TINY_SETTINGS))
        approx = GPT(GPTConfig(**TINY_SETTINGS, activation="gelu_tanh"))
        approx.load_state_dict(exact.state_dict())
        x = torch.randint(0, 256, (1, 8))
        difference = (exact(x)[0] - approx(x)[0]).abs().max().item()
        assert 0 < difference < 1e-2  # the same weights, a slightly different nonlinearity


class TestConfigForPreset:
    def test_overrides_apply_to_a_copy(self):
        config = config_for_preset("tiny", dropout=0.0)
        assert config.dropout == 0.0 and PRESETS["tiny"].dropout == 0.1

    def test_unknown_preset_lists_the_choices(self):
        with pytest.raises(ValueError, match=r"Unknown model preset 'gpt3'.*'tiny'"):
            config_for_preset("gpt3")


class TestGPT2Preset:
    def test_parameter_count(self, gpt2_on_meta):
        assert count_parameters(gpt2_on_meta) == ParameterCounts(124_439_808, 124_439_808, 0)

    def test_named_parameters_equal_nanogpt(self, gpt2_on_meta):
        assert [name for name, _ in gpt2_on_meta.named_parameters()] == NANOGPT_GPT2_NAMES

    def test_state_dict_has_no_mask_buffer_and_the_tied_head(self, gpt2_on_meta):
        assert list(gpt2_on_meta.state_dict()) == [*NANOGPT_GPT2_NAMES, "lm_head.weight"]

    def test_lm_head_is_tied_to_the_token_embedding(self, gpt2_on_meta):
        assert gpt2_on_meta.lm_head.weight is gpt2_on_meta.transformer.wte.weight


class TestForward:
    def test_logits_and_loss_near_uniform_at_init(self):
        model = tiny(dropout=0.0)
        idx, targets = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
        logits, loss = model(idx, targets)
        assert logits.shape == (2, 16, 256)
        assert abs(loss.item() - torch.log(torch.tensor(256.0)).item()) < 0.3

    def test_backward_reaches_every_parameter(self):
        model = tiny()
        _, loss = model(torch.randint(0, 256, (2, 8)), torch.randint(0, 256, (2, 8)))
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())

    def test_no_targets_no_loss(self):
        assert tiny()(torch.zeros(1, 4, dtype=torch.long))[1] is None

    def test_too_long_input_says_block_size(self):
        with pytest.raises(ValueError, match="longer than block_size 64"):
            tiny()(torch.zeros(1, 65, dtype=torch.long))


class TestGenerate:
    def test_same_seed_same_text(self):
        model, prompt = tiny(), torch.zeros(1, 3, dtype=torch.long)
        first = model.generate(prompt, 20, top_k=10, generator=torch.Generator().manual_seed(5))
        second = model.generate(prompt, 20, top_k=10, generator=torch.Generator().manual_seed(5))
        assert first.shape == (1, 23) and torch.equal(first, second)

    def test_leaves_the_global_rng_and_the_mode_alone(self):
        model = tiny()
        model.train()
        before = torch.get_rng_state()
        model.generate(torch.zeros(1, 3, dtype=torch.long), 5, generator=torch.Generator().manual_seed(1))
        assert torch.equal(torch.get_rng_state(), before) and model.training

    def test_crops_the_context_to_block_size(self):
        out = tiny().generate(torch.zeros(1, 64, dtype=torch.long), 3, generator=torch.Generator())
        assert out.shape == (1, 67)

    def test_rejects_zero_temperature(self):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            tiny().generate(torch.zeros(1, 1, dtype=torch.long), 1, temperature=0)


class TestCountParameters:
    def test_frozen_parameters_are_counted_apart(self):
        model = tiny()
        model.transformer.wpe.weight.requires_grad_(False)
        counts = count_parameters(model)
        assert counts.frozen == 64 * 64 and counts.trainable == counts.total - 64 * 64
