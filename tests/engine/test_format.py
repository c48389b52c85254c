"""The checkpoint dict: keys, kinds, the metadata subset."""

from __future__ import annotations

import math

import pytest
import torch

from utils.training.engine import format as fmt
from utils.training.engine.record import time_order
from utils.training.engine.safe_unpickle import TensorStub

from .helpers import TinyNet, stepped_optimizer


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

    def test_extra_metrics_may_be_tensors_like_the_known_ones(self):
        metrics = {
            "val_loss": 1.0,
            "perplexity": torch.tensor(7.5),
            "acc": 0.5,
            "bad": torch.tensor(math.inf),
        }
        cleaned = _build(metrics=metrics)[fmt.METRICS_KEY]
        assert (cleaned["perplexity"], cleaned["acc"], cleaned["bad"]) == (7.5, 0.5, None)

    def test_extra_non_numbers_are_left_out(self):
        cleaned = _build(metrics={"note": "hi", "flag": True, "vec": torch.ones(2)})[fmt.METRICS_KEY]
        assert set(cleaned) == set(fmt.METRIC_NAMES)

    def test_history_rows_keep_their_weight_change_maps_cleaned(self):
        row = {"epoch": 1, "global_step": 8, "val_loss": 2.0, "weight_change_from_step": 6.0, "note": "x",
               fmt.WEIGHT_CHANGE_KEY: {"a.weight": 0.25, "a.bias": None, "b": math.nan, "c": "text"},
               fmt.LAYER_CHANGE_KEY: {"block 0": torch.tensor(0.5)}}  # fmt: skip
        [cleaned] = _build(history=[row])[fmt.HISTORY_KEY]
        assert cleaned[fmt.WEIGHT_CHANGE_KEY] == {"a.weight": 0.25, "a.bias": None, "b": None, "c": None}
        assert cleaned[fmt.LAYER_CHANGE_KEY] == {"block 0": 0.5}
        assert cleaned[fmt.WEIGHT_CHANGE_FROM_STEP_KEY] == 6 and "note" not in cleaned

    def test_a_weight_change_that_is_not_a_map_is_dropped(self):
        [cleaned] = _build(history=[{"epoch": 0, fmt.WEIGHT_CHANGE_KEY: [0.1, 0.2]}])[fmt.HISTORY_KEY]
        assert fmt.WEIGHT_CHANGE_KEY not in cleaned

    def test_empty_model_state_is_refused(self):
        with pytest.raises(ValueError, match="model_state is empty"):
            _build(model_state={})


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

    def test_empty_weights_are_no_weights(self):
        assert fmt.checkpoint_kind({"model_state_dict": {}, "format_version": 1}) is None
        assert fmt.checkpoint_kind({"model_state_dict": {}, "epoch": 1}) is None
        assert fmt.model_state_of({"model_state_dict": {}}) is None

    def test_tensor_type_for_unpickled_stubs(self):
        stubs = {"w": TensorStub(torch.float32, (2,))}
        assert fmt.checkpoint_kind(stubs) is None
        assert fmt.checkpoint_kind(stubs, TensorStub) == "bare"


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


class TestContentFacts:
    def test_full_checkpoint(self):
        model = TinyNet()
        checkpoint = _build(
            optimizer_state=stepped_optimizer(model).state_dict(), rng_state={"t": torch.ones(2)}
        )
        facts = fmt.content_facts(checkpoint)
        # 4 weights, 3 AdamW tensors per weight (step, exp_avg, exp_avg_sq), 1 RNG state
        assert facts == {"has_optimizer": True, "has_rng_state": True, "tensor_count": 4 + 12 + 1}

    def test_none_and_empty_parts_are_absent(self):
        facts = fmt.content_facts({"model_state_dict": {"w": torch.ones(1)}, "optimizer_state_dict": {}})
        assert facts == {"has_optimizer": False, "has_rng_state": False, "tensor_count": 1}

    def test_bare_state_dict_with_stubs(self):
        stubs = {"a": TensorStub(), "b": TensorStub()}
        assert fmt.content_facts(stubs, TensorStub)["tensor_count"] == 2


class TestDescribeObject:
    @pytest.mark.parametrize(
        ("obj", "text"),
        [
            ({}, "an empty dict"),
            ({"epoch": 1}, "a dict with keys ['epoch']"),
            ({str(i): i for i in range(7)}, "a dict with keys ['0', '1', '2', '3', '4', '5', ...]"),
            ({"model_state_dict": {}}, "an empty 'model_state_dict'"),
            (torch.zeros(3), "a single tensor of shape [3]"),
            ([1], "a list"),
        ],
    )
    def test_texts(self, obj, text):
        assert fmt.describe_object(obj) == text

    def test_stub_is_a_tensor(self):
        assert fmt.describe_object(TensorStub(shape=(2, 2)), TensorStub) == "a single tensor of shape [2, 2]"


class TestTimeOrder:
    def test_iso_and_unknown(self):
        assert time_order("2025-01-01T00:00:01") - time_order("2025-01-01T00:00:00") == 1.0
        assert time_order(None) == time_order("not a time") == 0.0
