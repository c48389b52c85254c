"""A tiny model with its data and optimizer, built the same way every time (seeded)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch

from utils.data import EpochBatches, get_tokenizer, load_corpus, split_tokens, validation_batches
from utils.model import GPT, config_for_preset
from utils.training import TrainConfig, build_optimizer, build_scheduler


@dataclass
class Setup:
    model: GPT
    optimizer: torch.optim.Optimizer
    scheduler: object
    batches: EpochBatches
    val: list
    config: TrainConfig

    def args(self, checkpoint_dir):
        """The positional arguments of train()."""
        return (
            self.model,
            self.optimizer,
            self.scheduler,
            self.batches,
            self.val,
            self.config,
            checkpoint_dir,
        )


def make_setup(**overrides) -> Setup:
    torch.manual_seed(0)
    config = TrainConfig(
        epochs=2, batch_size=4, learning_rate=3e-3, warmup_steps=2, max_batches_per_epoch=5, eval_batches=2,
        keep_best=10, keep_last=10, seed=3, mixed_precision="off", device="cpu",
    )  # fmt: skip
    config = replace(config, **overrides)
    model = GPT(config_for_preset("tiny"))
    train_tokens, val_tokens = split_tokens(get_tokenizer().encode(load_corpus()[:12_000]), 0.1)
    batches = EpochBatches(train_tokens, config.batch_size, 64, config.seed, config.max_batches_per_epoch)
    val = validation_batches(val_tokens, config.batch_size, 64, config.eval_batches)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = build_scheduler(optimizer, config.warmup_steps, config.epochs * batches.batches_per_epoch)
    return Setup(model, optimizer, scheduler, batches, val, config)


@pytest.fixture
def setup() -> Setup:
    return make_setup()


@pytest.fixture(name="make_setup", scope="session")
def make_setup_fixture():
    """The factory itself, for tests that change settings: ``make_setup(epochs=3)``."""
    return make_setup
