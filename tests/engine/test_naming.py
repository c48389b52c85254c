"""Checkpoint file names: written and parsed by one pattern, ordered by numbers."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from utils.training.engine.naming import (
    checkpoint_filename,
    is_temporary_file,
    parse_checkpoint_filename,
    temporary_path_for,
    writer_pid,
)

WHEN = dt.datetime(2025, 11, 22, 6, 54, 55)


def _recency(name: str) -> tuple[int, dt.datetime]:
    """How the library orders checkpoints (recovery.newest): step, then time."""
    parsed = parse_checkpoint_filename(name)
    return (parsed.global_step, parsed.timestamp)


class TestCheckpointFilename:
    def test_pattern_from_the_design(self):
        assert checkpoint_filename(9, 9, WHEN) == "checkpoint_epoch0009_step000009_20251122_065455.pt"

    def test_wider_numbers_are_not_truncated(self):
        assert checkpoint_filename(12345, 1234567, WHEN).startswith("checkpoint_epoch12345_step1234567_")

    def test_negative_numbers_are_refused(self):
        with pytest.raises(ValueError, match="must be >= 0"):
            checkpoint_filename(-1, 0, WHEN)


class TestParseCheckpointFilename:
    def test_round_trip(self):
        parsed = parse_checkpoint_filename(checkpoint_filename(3, 1200, WHEN))
        assert (parsed.epoch, parsed.global_step, parsed.timestamp) == (3, 1200, WHEN)

    def test_accepts_a_path(self):
        parsed = parse_checkpoint_filename(Path("/x/y") / checkpoint_filename(1, 2, WHEN))
        assert parsed.epoch == 1

    def test_epoch_9_sorts_before_epoch_10(self):
        names = [checkpoint_filename(e, e * 100, WHEN) for e in (10, 9, 100, 1)]
        ordered = sorted(names, key=_recency)
        assert [parse_checkpoint_filename(n).epoch for n in ordered] == [1, 9, 10, 100]

    def test_step_999999_sorts_before_1000000(self):
        names = [checkpoint_filename(0, 1_000_000, WHEN), checkpoint_filename(0, 999_999, WHEN)]
        ordered = sorted(names, key=_recency)
        assert parse_checkpoint_filename(ordered[0]).global_step == 999_999

    @pytest.mark.parametrize(
        "name",
        [
            "model.pt",
            "checkpoint_epoch0009_step000009_20251122_065455.pth",
            "checkpoint_epoch9_step000009_20251122_065455.pt",
            "checkpoint_epoch0009_step000009_20251322_065455.pt",  # month 13
            ".checkpoint_epoch0009_step000009_20251122_065455.pt.tmp-12-ab",
        ],
    )
    def test_other_names_are_not_ours(self, name):
        assert parse_checkpoint_filename(name) is None


class TestIsTemporaryFile:
    def test_temporary_path_is_temporary(self, tmp_path):
        assert is_temporary_file(temporary_path_for(tmp_path / "checkpoint.pt"))

    def test_final_names_are_not_temporary(self):
        assert not is_temporary_file(checkpoint_filename(1, 1, WHEN))
        assert not is_temporary_file("notes.tmp-1-2")  # no leading dot


class TestTemporaryPathFor:
    def test_same_folder_with_pid(self, tmp_path):
        temporary = temporary_path_for(tmp_path / "a.pt")
        assert temporary.parent == tmp_path
        assert f".tmp-{os.getpid()}-" in temporary.name

    def test_unique(self, tmp_path):
        assert temporary_path_for(tmp_path / "a.pt") != temporary_path_for(tmp_path / "a.pt")


class TestWriterPid:
    def test_pid_from_temporary_name(self, tmp_path):
        assert writer_pid(temporary_path_for(tmp_path / "x.pt")) == os.getpid()

    def test_none_for_other_names(self):
        assert writer_pid("checkpoint.pt") is None and writer_pid("a.tmp-12-ab") is None

    def test_parses_what_temporary_path_for_writes(self, tmp_path):
        name = temporary_path_for(tmp_path / "checkpoint_epoch0001_step000002_20250101_000000.pt").name
        assert is_temporary_file(name) and writer_pid(name) == os.getpid()
