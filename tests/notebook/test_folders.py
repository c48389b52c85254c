"""Cell 6: the checkpoint folder is created, tested for writing, and scanned for an earlier run."""

from __future__ import annotations

import pytest

from utils.notebook.folders import check_checkpoint_folder
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.recovery import latest_checkpoint


class TestCheckCheckpointFolder:
    def test_creates_a_missing_folder(self, tmp_path):
        report = check_checkpoint_folder(tmp_path / "new" / "ckpt")
        assert report.created and report.writable and report.ok and report.checkpoints == 0

    def test_existing_run_gives_the_resume_hint(self, checkpoint_dir):
        report = check_checkpoint_folder(checkpoint_dir, resume="none")
        assert report.checkpoints == 3 and "epoch0002" in report.latest
        assert 'RESUME = "latest"' in "\n".join(report.lines())

    def test_latest_is_the_file_resume_latest_picks(self, same_step_runs):
        folder, newer = same_step_runs
        report = check_checkpoint_folder(folder)
        assert report.latest == newer.name == latest_checkpoint(folder).name

    def test_no_hint_when_resuming(self, checkpoint_dir):
        assert check_checkpoint_folder(checkpoint_dir, resume="latest").hints == []

    def test_a_file_is_not_a_folder(self, tmp_path):
        path = tmp_path / "file"
        path.write_text("x")
        report = check_checkpoint_folder(path)
        assert not report.ok
        with pytest.raises(CheckpointSaveError, match="not a folder"):
            report.raise_if_unusable()

    def test_damaged_files_are_listed(self, checkpoint_dir):
        (checkpoint_dir / "broken.pt").write_bytes(b"")
        report = check_checkpoint_folder(checkpoint_dir)
        assert report.checkpoints == 3 and any("broken.pt" in line for line in report.skipped)
