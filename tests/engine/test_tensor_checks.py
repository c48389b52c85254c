"""tensor_checks: tied-tensor identity, bit-exact equality, NaN/Inf detection."""

from __future__ import annotations

import math

import torch

from utils.training.engine.tensor_checks import CHUNK, equal_bits, has_nonfinite, storage_key


class TestStorageKey:
    def test_tied_views_share_a_key_and_distinct_tensors_do_not(self):
        weight = torch.zeros(4, 3)
        assert storage_key(weight) == storage_key(weight.detach())
        assert storage_key(weight) != storage_key(weight.clone())
        assert storage_key(weight) != storage_key(weight.t())  # same memory, another view

    def test_empty_tensors_are_never_tied(self):
        assert storage_key(torch.empty(0)) != storage_key(torch.empty(0))


class TestEqualBits:
    def test_same_values_including_nan(self):
        a = torch.tensor([1.0, math.nan, -0.0])
        assert equal_bits(a, a.clone())
        assert not equal_bits(a, torch.tensor([1.0, math.nan, 0.0]))  # -0.0 and 0.0 differ in bits

    def test_conversion_is_applied_piecewise(self):
        half = torch.randn(CHUNK + 5).half()
        assert equal_bits(half.float(), half)
        changed = half.float()
        changed[-1] += 1
        assert not equal_bits(changed, half)

    def test_different_sizes_are_not_equal(self):
        assert not equal_bits(torch.zeros(3), torch.zeros(4))

    def test_a_transposed_view_is_compared_as_it_lies(self):
        stored = torch.randn(5, 7)
        copy = stored.t().contiguous()
        assert equal_bits(copy, stored.t())
        copy[3, 2] = math.nan
        assert not equal_bits(copy, stored.t())


class TestHasNonfinite:
    def test_nan_and_inf_are_found(self):
        assert has_nonfinite(torch.tensor([0.0, math.nan]))
        assert has_nonfinite(torch.tensor([math.inf, 1.0]).bfloat16())

    def test_overflowing_sum_of_finite_values_is_not_reported(self):
        assert not has_nonfinite(torch.full((10,), 3e38))
        assert not has_nonfinite(torch.full((10,), 60000.0).half())

    def test_integer_and_empty_tensors_are_finite(self):
        assert not has_nonfinite(torch.arange(5)) and not has_nonfinite(torch.empty(0))
