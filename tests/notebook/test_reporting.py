"""Training summary, dashboard from the session, and the final summary."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from utils.notebook.reporting import build_dashboard, final_summary, step_losses_of, training_summary
from utils.training.engine.errors import NoCheckpointsError
from utils.training.engine.recovery import latest_checkpoint


class TestTrainingSummary:
    def test_mentions_resume_best_and_stop(self):
        run = SimpleNamespace(epochs_completed=2, global_step=20, elapsed_s=3.0, resumed_from=Path("/c/a.pt"),
                              best_val_loss=2.5, best_checkpoint=Path("/c/b.pt"), checkpoints=[1, 2],
                              stop_reason="session limit", save_failures=["disk full"])  # fmt: skip
        text = "\n".join(training_summary(run))
        assert (
            "Resumed from a.pt" in text
            and "2.5000" in text
            and "session limit" in text
            and "disk full" in text
        )
        assert "Best checkpoint written this session: /c/b.pt" in text


class TestStepLossesOf:
    def test_reads_the_stored_losses(self, checkpoint_dir):
        latest = sorted(checkpoint_dir.glob("*.pt"))[-1]
        losses = step_losses_of(latest)
        assert len(losses) == 30 and losses[0] == 5.0

    def test_missing_or_broken_file_gives_nothing(self, tmp_path):
        (tmp_path / "x.pt").write_bytes(b"junk")
        assert step_losses_of(None) == [] and step_losses_of(tmp_path / "x.pt") == []

    def test_an_unreadable_file_says_why_in_one_line(self, tmp_path, capsys):
        (tmp_path / "x.pt").write_bytes(b"")
        assert step_losses_of(tmp_path / "x.pt") == []
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1 and lines[0].startswith("⚠️  No per-step loss curve: x.pt cannot be read (")

    def test_other_failures_are_not_swallowed(self, checkpoint_dir, monkeypatch):
        def broken(path, **kwargs):
            raise RuntimeError("a bug, not a bad file")

        monkeypatch.setattr("utils.notebook.reporting.open_checkpoint", broken)
        with pytest.raises(RuntimeError, match="a bug"):
            step_losses_of(sorted(checkpoint_dir.glob("*.pt"))[-1])


class TestBuildDashboard:
    def test_recovers_results_when_cell_33_was_skipped(self, checkpoint_dir, tmp_path):
        path = build_dashboard({"CHECKPOINT_DIR": str(checkpoint_dir)}, tmp_path)
        assert path.name == "training_dashboard.png" and path.stat().st_size > 10_000

    def test_no_checkpoints_raises_the_engines_error(self, tmp_path):
        with pytest.raises(NoCheckpointsError):
            build_dashboard({"CHECKPOINT_DIR": str(tmp_path / "none")}, tmp_path)


class TestFinalSummary:
    def test_latest_is_the_file_resume_latest_picks(self, same_step_runs, tmp_path):
        folder, newer = same_step_runs
        text = "\n".join(final_summary(folder, tmp_path / "out"))
        assert f"latest: {newer.name} (step 30)" in text and newer.name == latest_checkpoint(folder).name

    def test_lists_checkpoints_and_outputs(self, checkpoint_dir, tmp_path):
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "plot.png").write_bytes(b"x" * 10)
        text = "\n".join(final_summary(checkpoint_dir, tmp_path / "out"))
        assert "3 files" in text and "best:   checkpoint_epoch0001" in text and "plot.png" in text
