"""Batches: a split, epoch order fixed by (seed, epoch, index), fixed validation batches."""

from __future__ import annotations

import pytest
import torch

from utils.data.batches import EpochBatches, split_tokens, validation_batches

TOKENS = torch.arange(2_000)  # token i at position i: a window shows where it came from


class TestSplitTokens:
    def test_tail_is_validation(self):
        train, val = split_tokens(list(range(100)), 0.1)
        assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
        assert train.dtype == torch.int64

    def test_rejects_bad_fraction(self):
        with pytest.raises(ValueError, match="val_fraction"):
            split_tokens(range(100), 1.0)


class TestEpochBatches:
    def test_shapes_and_shifted_targets(self):
        x, y = EpochBatches(TOKENS, 4, 16, seed=1).batch(0, 0)
        assert x.shape == y.shape == (4, 16)
        assert torch.equal(x[:, 1:], y[:, :-1])

    def test_batch_depends_only_on_seed_epoch_index(self):
        first, second = EpochBatches(TOKENS, 4, 16, seed=1), EpochBatches(TOKENS, 4, 16, seed=1)
        second.batch(3, 2)  # a different history of calls
        assert all(torch.equal(a, b) for a, b in zip(first.batch(1, 5), second.batch(1, 5), strict=True))

    def test_epochs_and_seeds_differ(self):
        batches = EpochBatches(TOKENS, 4, 16, seed=1)
        assert not torch.equal(batches.batch(0, 0)[0], batches.batch(1, 0)[0])
        assert not torch.equal(batches.batch(0, 0)[0], EpochBatches(TOKENS, 4, 16, seed=2).batch(0, 0)[0])

    def test_windows_in_an_epoch_do_not_repeat(self):
        batches = EpochBatches(TOKENS, 4, 16, seed=3)
        starts = [row[0].item() for i in range(len(batches)) for row in batches.batch(2, i)[0]]
        assert len(batches) == (2_000 // 16 - 1) // 4 and len(set(starts)) == len(starts)

    def test_does_not_touch_the_global_rng(self):
        before = torch.get_rng_state()
        EpochBatches(TOKENS, 4, 16, seed=1).batch(0, 0)
        assert torch.equal(torch.get_rng_state(), before)

    def test_max_batches_per_epoch_caps(self):
        assert EpochBatches(TOKENS, 4, 16, seed=1, max_batches_per_epoch=3).batches_per_epoch == 3

    def test_too_little_text(self):
        with pytest.raises(ValueError, match=r"(?s)fewer than batch_size=8.*Fix"):
            EpochBatches(TOKENS[:100], 8, 16, seed=1)

    def test_index_out_of_range(self):
        with pytest.raises(IndexError):
            EpochBatches(TOKENS, 4, 16, seed=1, max_batches_per_epoch=2).batch(0, 2)


class TestValidationBatches:
    def test_same_list_every_time_in_order(self):
        first = validation_batches(TOKENS[:200], 4, 16)
        second = validation_batches(TOKENS[:200], 4, 16)
        assert [x.tolist() for x, _ in first] == [x.tolist() for x, _ in second]
        assert first[0][0][0].tolist() == list(range(16))

    def test_last_batch_may_be_smaller_and_max_batches_caps(self):
        batches = validation_batches(TOKENS[:200], 4, 16)  # 12 windows -> 4, 4, 4
        assert [len(x) for x, _ in batches] == [4, 4, 4]
        assert len(validation_batches(TOKENS[:200], 4, 16, max_batches=2)) == 2

    def test_too_short(self):
        with pytest.raises(ValueError, match="fewer than block_size"):
            validation_batches(TOKENS[:10], 4, 16)
