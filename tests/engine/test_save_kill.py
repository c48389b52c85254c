"""A save killed at any instant leaves every earlier checkpoint intact and nothing unloadable listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from utils.training.engine.naming import is_temporary_file
from utils.training.engine.recovery import scan_checkpoints

from .helpers import save

CHILD = Path(__file__).with_name("save_loop_child.py")
ROUNDS = 24


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """Run the kill driver once: ROUNDS savers, each SIGKILLed at a random moment."""
    folder = tmp_path_factory.mktemp("kill") / "checkpoints"
    done = subprocess.run(
        [sys.executable, str(CHILD), str(folder), "--rounds", str(ROUNDS), "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return folder, [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.slow
class TestSaveCheckpointUnderSigkill:
    def test_every_round_was_killed(self, killed_run):
        _, rounds = killed_run
        assert len(rounds) == ROUNDS
        assert sum(len(r["completed"]) for r in rounds) >= ROUNDS  # savers did real work between kills
        assert any(r["temporary"] for r in rounds)  # at least one kill landed inside a write

    def test_no_completed_checkpoint_was_lost(self, killed_run):
        folder, rounds = killed_run
        completed = {Path(p) for r in rounds for p in r["completed"]}
        listed = {info.path for info in scan_checkpoints(folder).checkpoints}
        assert completed <= listed

    def test_every_listed_checkpoint_loads_and_nothing_is_skipped(self, killed_run):
        folder, _ = killed_run
        result = scan_checkpoints(folder)
        assert result.skipped == []
        for info in result.checkpoints:
            loaded = torch.load(info.path, weights_only=True)
            assert loaded["global_step"] == info.global_step and len(loaded["model_state_dict"]) == 4

    def test_next_save_cleans_the_leftover_temporary_files(self, killed_run):
        folder, _ = killed_run
        save(folder, epoch=999, step=99_999_999)
        assert not [n.name for n in folder.iterdir() if is_temporary_file(n.name)]
