"""The pure retention rule: best K by val_loss + latest N by step, never the best or the newest."""

from __future__ import annotations

from pathlib import Path

import pytest

from utils.training.engine.retention import RetentionCandidate, RetentionPolicy, select_for_deletion


def _candidates(val_losses):
    """One candidate per step 1..n with the given val_loss (None: not evaluated)."""
    return [
        RetentionCandidate(Path(f"s{step}.pt"), step, loss, float(step))
        for step, loss in enumerate(val_losses, start=1)
    ]


def _kept(candidates, policy, protect=()):
    deleted = set(select_for_deletion(candidates, policy, protect))
    return sorted(c.global_step for c in candidates if c.path not in deleted)


class TestRetentionPolicy:
    def test_zero_best_allowed_zero_last_not(self):
        assert RetentionPolicy(keep_best=0).keep_best == 0
        with pytest.raises(ValueError, match="keep_last"):
            RetentionPolicy(keep_last=0)

    def test_bool_is_not_a_count(self):
        with pytest.raises(ValueError, match="keep_best=True"):
            RetentionPolicy(keep_best=True)


class TestSelectForDeletion:
    def test_best_and_latest(self):
        kept = _kept(_candidates([3.0, 1.0, 2.0, 4.0, 5.0]), RetentionPolicy(keep_best=1, keep_last=2))
        assert kept == [2, 4, 5]

    def test_best_two(self):
        kept = _kept(_candidates([3.0, 1.0, 2.0, 4.0, 5.0]), RetentionPolicy(keep_best=2, keep_last=1))
        assert kept == [2, 3, 5]

    def test_best_is_newest_keeps_fewer_files(self):
        assert _kept(_candidates([3.0, 2.0, 1.0]), RetentionPolicy(keep_best=1, keep_last=1)) == [3]

    def test_never_deletes_best_even_when_old(self):
        kept = _kept(_candidates([0.1] + [9.0] * 20), RetentionPolicy(keep_best=1, keep_last=1))
        assert kept == [1, 21]

    def test_entries_without_val_loss_are_never_best(self):
        assert _kept(_candidates([None, None, 2.0, None]), RetentionPolicy(1, 1)) == [3, 4]

    def test_newest_by_step_not_by_list_order(self):
        candidates = list(reversed(_candidates([1.0, 2.0, 3.0])))
        assert _kept(candidates, RetentionPolicy(keep_best=0, keep_last=1)) == [3]

    def test_step_tie_broken_by_time(self):
        a = RetentionCandidate(Path("a.pt"), 10, None, 100.0)
        b = RetentionCandidate(Path("b.pt"), 10, None, 200.0)
        assert select_for_deletion([b, a], RetentionPolicy(keep_best=0, keep_last=1)) == [Path("a.pt")]

    def test_protected_path_is_kept(self):
        candidates = _candidates([5.0, 4.0, 3.0])
        kept = _kept(candidates, RetentionPolicy(1, 1), protect=[Path("s1.pt")])
        assert kept == [1, 3]

    def test_deletions_are_oldest_first(self):
        deleted = select_for_deletion(_candidates([1.0, 5.0, 5.0, 5.0, 5.0]), RetentionPolicy(1, 1))
        assert deleted == [Path("s2.pt"), Path("s3.pt"), Path("s4.pt")]

    def test_empty(self):
        assert select_for_deletion([], RetentionPolicy()) == []
