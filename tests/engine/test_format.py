"""The checkpoint dict: keys, kinds, the metadata subset."""

from __future__ import annotations

import math

import torch

from utils.training.engine import format as fmt

from .helpers import TinyNet


def _build(**overrides):
    parts = {
        "model_state": TinyNet().state_dict(),
        "epoch": 2,
        "global_step": 40,
        "metrics": {"val_loss": 1.5},
    }
    parts.update(overrides)
    return fmt.build_checkpoint(**parts)


class TestBuildCheckpoint:
    def test_required_keys_and_version(self):
        checkpoint = _build()
        for key in (
            fmt.FORMAT_VERSION_KEY,
            fmt.MODEL_STATE_KEY,
            fmt.OPTIMIZER_STATE_KEY,
            fmt.EPOCH_KEY,
            fmt.GLOBAL_STEP_KEY,
            fmt.TIMESTAMP_KEY,
            fmt.METRICS_KEY,
            fmt.HISTORY_KEY,
            fmt.CONFIG_KEY,
        ):
            assert key in checkpoint, key
        assert checkpoint[fmt.FORMAT_VERSION_KEY] == fmt.FORMAT_VERSION

    def test_absent_optional_parts_are_left_out(self):
        checkpoint = _build()
        for key in (fmt.SCHEDULER_STATE_KEY, fmt.SCALER_STATE_KEY, fmt.RNG_STATE_KEY, fmt.STEP_LOSSES_KEY):
            assert key not in checkpoint

    def test_metrics_become_floats_or_none(self):
        metrics = {"train_loss": torch.tensor(2.0), "val_loss": math.nan, "learning_rate": 3}
        cleaned = _build(metrics=metrics)[fmt.METRICS_KEY]
        assert cleaned == {"train_loss": 2.0, "val_loss": None, "learning_rate": 3.0}


class TestCheckpointKind:
    def test_three_kinds(self):
        weights = TinyNet().state_dict()
        assert fmt.checkpoint_kind(_build()) == "full"
        assert fmt.checkpoint_kind({"model_state_dict": weights, "epoch": 1}) == "legacy"
        assert fmt.checkpoint_kind(weights) == "bare"

    def test_no_weights(self):
        assert fmt.checkpoint_kind({"epoch": 1}) is None
        assert fmt.checkpoint_kind([1, 2]) is None
        assert fmt.checkpoint_kind({}) is None


class TestModelStateOf:
    def test_weights_of_each_kind(self):
        weights = TinyNet().state_dict()
        assert fmt.model_state_of(weights) is weights
        assert set(fmt.model_state_of(_build(model_state=weights))) == set(weights)
        assert fmt.model_state_of({"epoch": 1}) is None


class TestMetadataOf:
    def test_small_keys_only(self):
        meta = fmt.metadata_of(_build())
        assert fmt.MODEL_STATE_KEY not in meta and fmt.OPTIMIZER_STATE_KEY not in meta
        assert meta[fmt.GLOBAL_STEP_KEY] == 40 and meta[fmt.METRICS_KEY]["val_loss"] == 1.5
