"""Cell 24's resume preview and Cell 33's recovery: results, table, plot."""

from __future__ import annotations

from pathlib import Path

from utils.notebook.recovery_view import checkpoint_recovery, preview_resume
from utils.training.engine import recovery


class TestPreviewResume:
    def test_fresh_start(self):
        assert "new run" in preview_resume(None, "none")[0]

    def test_lists_what_is_missing(self, checkpoint_dir):
        path = sorted(checkpoint_dir.glob("*.pt"))[-1]
        text = "\n".join(preview_resume(path, "latest"))
        assert path.name in text and "written in epoch 3 at global step 30" in text
        assert "missing: optimizer state, random generators, data position" in text


class TestCheckpointRecovery:
    def test_results_table_and_plot(self, checkpoint_dir, tmp_path, capsys):
        results = checkpoint_recovery(checkpoint_dir, tmp_path / "out")
        out = capsys.readouterr().out
        assert Path(results["checkpoint_path"]).name.startswith("checkpoint_epoch0001")
        assert "(epoch 1, after 2 epochs; val_loss 2.5000)" in out and "3 valid" in out
        assert (tmp_path / "out" / "training_curves.png").exists()

    def test_the_folder_is_scanned_once(self, checkpoint_dir, tmp_path, monkeypatch):
        # one scan: the table printed and the results returned describe the same files
        scanned, real_scan = [], recovery.scan_checkpoints

        def counting_scan(folder):
            scanned.append(folder)
            return real_scan(folder)

        monkeypatch.setattr(recovery, "scan_checkpoints", counting_scan)
        monkeypatch.setattr("utils.notebook.recovery_view.scan_checkpoints", counting_scan)
        results = checkpoint_recovery(checkpoint_dir, tmp_path / "out")
        assert len(scanned) == 1 and len(results["checkpoints"]) == 3

    def test_empty_folder_prints_and_returns_none(self, tmp_path, capsys):
        assert checkpoint_recovery(tmp_path / "none", tmp_path) is None
        assert "❌" in capsys.readouterr().out
