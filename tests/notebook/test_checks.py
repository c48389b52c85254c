"""The pre-training checks pass on a healthy model, fail on a broken one, and change nothing."""

from __future__ import annotations

import torch

from utils.notebook.checks import causality_check, gradient_check, overfit_one_batch, untrained_loss_check


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, before):
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class TestCausalityCheck:
    def test_healthy_model_passes(self, tiny_model):
        assert causality_check(tiny_model).passed

    def test_leaky_model_fails(self, tiny_model):
        leaky = torch.nn.Module()
        leaky.config = tiny_model.config
        leaky.weight = torch.nn.Parameter(torch.zeros(1))
        leaky.forward = lambda idx, targets=None: (
            idx.float().cumsum(1).flip(1)[..., None].repeat(1, 1, 4),
            None,
        )
        result = causality_check(leaky)
        assert not result.passed and "leaks" in result.message


class TestUntrainedLossCheck:
    def test_near_ln_vocab(self, tiny_model, val_batches):
        result = untrained_loss_check(tiny_model, val_batches[0])
        assert result.passed and "ln(256)" in result.line()

    def test_pretrained_weights_are_reported_not_judged(self, tiny_model, val_batches):
        with torch.no_grad():
            tiny_model.lm_head.weight.mul_(50)  # far from uniform guesses, as trained weights are
        assert not untrained_loss_check(tiny_model, val_batches[0]).passed
        result = untrained_loss_check(tiny_model, val_batches[0], pretrained=True)
        assert result.passed and "pretrained weights (INIT_FROM)" in result.line()


class TestGradientCheck:
    def test_all_tensors_get_gradients_and_nothing_changes(self, tiny_model, val_batches):
        before, rng = _snapshot(tiny_model), torch.get_rng_state()
        result = gradient_check(tiny_model, val_batches[0])
        assert result.passed and _unchanged(tiny_model, before)
        assert all(p.grad is None for p in tiny_model.parameters())
        assert torch.equal(rng, torch.get_rng_state())

    def test_frozen_tensor_is_reported(self, tiny_model, val_batches):
        tiny_model.transformer.wpe.weight.requires_grad_(False)
        tiny_model.transformer.h[0].ln_1.bias.register_hook(lambda g: g * 0)
        result = gradient_check(tiny_model, val_batches[0])
        assert not result.passed and "transformer.h.0.ln_1.bias" in result.details["missing"]


class TestOverfitOneBatch:
    def test_loss_drops_and_the_model_is_untouched(self, tiny_model, val_batches):
        before = _snapshot(tiny_model)
        result = overfit_one_batch(tiny_model, val_batches[0], steps=25, learning_rate=1e-2)
        assert result.passed and result.details["losses"][-1] < result.details["losses"][0]
        assert _unchanged(tiny_model, before)
