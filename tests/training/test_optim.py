"""build_optimizer's weight-decay groups; build_scheduler's warmup + cosine and its saved state."""

from __future__ import annotations

import io

import pytest
import torch

from utils.model import GPT, config_for_preset
from utils.training.optim import WarmupCosine, build_optimizer, build_scheduler


@pytest.fixture
def model() -> GPT:
    return GPT(config_for_preset("tiny"))


class TestBuildOptimizer:
    def test_matrices_and_embeddings_decay_vectors_do_not(self, model):
        optimizer = build_optimizer(model, 1e-3, 0.1)
        decay, no_decay = optimizer.param_groups
        assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
        assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
        assert any(p is model.transformer.wte.weight for p in decay["params"])

    def test_every_parameter_once_tied_included(self, model):
        params = [p for group in build_optimizer(model, 1e-3, 0.1).param_groups for p in group["params"]]
        assert len(params) == len({id(p) for p in params}) == len(list(model.parameters()))

    def test_frozen_parameters_are_left_out(self, model):
        model.transformer.wpe.weight.requires_grad_(False)
        params = [p for group in build_optimizer(model, 1e-3, 0.1).param_groups for p in group["params"]]
        assert all(p is not model.transformer.wpe.weight for p in params)

    def test_rejects_non_positive_learning_rate(self, model):
        with pytest.raises(ValueError, match="learning_rate must be > 0"):
            build_optimizer(model, 0.0, 0.1)


class TestBuildScheduler:
    def test_warmup_then_cosine_to_the_floor(self, model):
        optimizer = build_optimizer(model, 1.0, 0.0)
        scheduler = build_scheduler(optimizer, warmup_steps=3, total_steps=13, min_lr_ratio=0.1)
        rates = []
        for _ in range(16):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert rates[:3] == pytest.approx([0.25, 0.5, 0.75])
        assert rates[3] == pytest.approx(1.0) and rates[8] == pytest.approx(0.55)
        assert rates[13:] == pytest.approx([0.1, 0.1, 0.1])

    def test_state_dict_loads_with_weights_only_and_restores_the_schedule(self, model):
        scheduler = build_scheduler(build_optimizer(model, 1.0, 0.0), 2, 10)
        buffer = io.BytesIO()
        torch.save(scheduler.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        other = build_scheduler(build_optimizer(model, 1.0, 0.0), 5, 99)
        other.load_state_dict(state)
        assert other.lr_lambdas[0].total_steps == 10 and other.lr_lambdas[0].warmup_steps == 2

    def test_rejects_zero_total_steps(self):
        with pytest.raises(ValueError, match="total_steps must be >= 1"):
            WarmupCosine(0, 0)
