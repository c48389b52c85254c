"""Listing, latest, recovery results and the terminal view."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from utils.training.engine import recovery
from utils.training.engine.errors import NoCheckpointsError
from utils.training.engine.naming import temporary_path_for
from utils.training.engine.recovery import (
    format_checkpoint_table,
    latest_checkpoint,
    list_checkpoints,
    main,
    newest,
    recover_training_results,
    results_from_scan,
    scan_checkpoints,
)

from .helpers import TinyNet, save, write_legacy
from .sharded_helpers import forge_sharded_record

ROOT = Path(__file__).resolve().parents[2]


def _history(epochs):
    return [
        {
            "epoch": e,
            "global_step": 10 * (e + 1),
            "train_loss": 3.0 - e,
            "val_loss": 3.5 - e,
            "learning_rate": 1e-3,
        }
        for e in range(epochs)
    ]


_REAL_STAT = Path.stat


def _no_stat(self, *args, **kwargs):
    if self.suffix == ".pt":
        raise AssertionError("the listing needs no stat() per file")
    return _REAL_STAT(self, *args, **kwargs)


def _broken_files(folder):
    """An empty, a truncated and a random file, plus a leftover temporary file."""
    good = save(folder, epoch=0, step=1)
    (folder / "empty.pt").write_bytes(b"")
    (folder / "cut.pt").write_bytes(good.read_bytes()[:300])
    (folder / "noise.pt").write_bytes(b"not a checkpoint at all")
    temporary_path_for(folder / "checkpoint_epoch0001_step000002_20250101_000000.pt").write_bytes(
        b"PK\x03\x04"
    )
    return good


class TestListCheckpoints:
    def test_missing_and_empty_folder(self, tmp_path):
        assert list_checkpoints(tmp_path / "missing") == []
        assert list_checkpoints(tmp_path) == []

    def test_folder_that_is_a_file(self, tmp_path):
        (tmp_path / "f").write_text("x")
        lines = []
        assert list_checkpoints(tmp_path / "f", on_skip=lines.append) == []
        assert lines == ["Skipped f: is a file, not a folder"]

    def test_best_val_loss_first_then_newest_without_val_loss(self, tmp_path):
        for epoch, val in [(0, 3.0), (1, None), (2, 1.0), (3, None), (4, 2.0)]:
            save(tmp_path, epoch=epoch, step=epoch * 10, val_loss=val)
        assert [c.epoch for c in list_checkpoints(tmp_path)] == [2, 4, 0, 3, 1]

    def test_epoch_9_before_epoch_10_by_number(self, tmp_path):
        for epoch in (10, 9, 11):
            save(tmp_path, epoch=epoch, step=epoch, val_loss=None)
        assert [c.epoch for c in list_checkpoints(tmp_path)] == [11, 10, 9]

    def test_val_loss_tie_prefers_higher_step(self, tmp_path):
        save(tmp_path, epoch=0, step=5, val_loss=1.0)
        save(tmp_path, epoch=1, step=9, val_loss=1.0)
        assert [c.global_step for c in list_checkpoints(tmp_path)] == [9, 5]

    def test_broken_files_skipped_with_one_line_each_temp_silent(self, tmp_path):
        good = _broken_files(tmp_path)
        lines = []
        listed = list_checkpoints(tmp_path, on_skip=lines.append)
        assert [c.path for c in listed] == [good]
        assert sorted(line.split(":")[0] for line in lines) == [
            "Skipped cut.pt",
            "Skipped empty.pt",
            "Skipped noise.pt",
        ]

    def test_default_on_skip_prints_to_stderr(self, tmp_path, capsys):
        (tmp_path / "empty.pt").write_bytes(b"")
        list_checkpoints(tmp_path)
        assert "Skipped empty.pt: is empty (0 bytes)" in capsys.readouterr().err

    def test_fields(self, tmp_path):
        path = save(tmp_path, epoch=2, step=20, val_loss=1.5)
        info = list_checkpoints(tmp_path)[0]
        assert (info.path, info.name, info.epoch, info.global_step) == (path, path.name, 2, 20)
        assert (info.train_loss, info.val_loss, info.learning_rate) == (2.0, 1.5, 1e-3)
        assert info.size_bytes == path.stat().st_size and info.kind == "full" and info.format_version == 1

    def test_legacy_and_bare_files_are_listed(self, tmp_path):
        write_legacy(tmp_path, epoch=9, step=9, val_loss=2.5)
        torch.save(TinyNet().state_dict(), tmp_path / "weights.pt")
        assert [(c.kind, c.val_loss) for c in list_checkpoints(tmp_path)] == [("legacy", 2.5), ("bare", None)]

    def test_only_entries_directly_in_the_folder_and_unrelated_folders_are_silent(self, tmp_path):
        save(tmp_path / "sub", epoch=0, step=1)  # a folder of checkpoints is not one checkpoint
        (tmp_path / "notes.txt").write_text("x")
        (tmp_path / "dir.pt").mkdir()
        (tmp_path / "logs").mkdir()
        lines = []
        assert list_checkpoints(tmp_path, on_skip=lines.append) == []
        assert lines == [
            "Skipped dir.pt: is a folder that is not a checkpoint of a known layout (it holds: nothing)"
        ]


class TestScanCheckpoints:
    def test_skipped_reasons(self, tmp_path):
        _broken_files(tmp_path)
        result = scan_checkpoints(tmp_path)
        reasons = {path.name: reason for path, reason in result.skipped}
        assert len(result.checkpoints) == 1
        assert reasons["empty.pt"].startswith("is empty (0 bytes)")
        assert "is truncated" in reasons["cut.pt"]

    def test_a_forged_sharded_record_is_skipped_with_its_reason(self, tmp_path):
        genuine = save(tmp_path, epoch=0, step=1, val_loss=0.5)
        forged = forge_sharded_record(tmp_path)
        result = scan_checkpoints(tmp_path)
        assert [record.path for record in result.checkpoints] == [genuine]
        assert result.skipped[0][0] == forged and "disagrees with the folder" in result.skipped[0][1]

    def test_file_deleted_during_the_scan_is_dropped_silently(self, tmp_path, monkeypatch):
        kept = save(tmp_path, epoch=0, step=1)
        doomed = save(tmp_path, epoch=1, step=2)
        original = recovery._record_of

        def read_after_concurrent_delete(path, is_dir=None):
            if path == doomed:
                path.unlink()
            return original(path, is_dir)

        monkeypatch.setattr(recovery, "_record_of", read_after_concurrent_delete)
        result = scan_checkpoints(tmp_path)
        assert [c.path for c in result.checkpoints] == [kept] and result.skipped == []

    def test_sizes_come_from_the_open_file_not_a_second_stat(self, tmp_path, monkeypatch):
        sizes = {p.name: p.stat().st_size for p in (save(tmp_path, 0, 1), write_legacy(tmp_path, 1, 2))}
        monkeypatch.setattr(Path, "stat", _no_stat)
        assert {c.name: c.size_bytes for c in scan_checkpoints(tmp_path).checkpoints} == sizes

    def test_dangling_symlink_is_reported(self, tmp_path):
        (tmp_path / "link.pt").symlink_to(tmp_path / "gone.pt")
        assert scan_checkpoints(tmp_path).skipped == [
            (tmp_path / "link.pt", "is a broken symbolic link: its target does not exist")
        ]


class TestLatestCheckpoint:
    def test_highest_step_not_best(self, tmp_path):
        save(tmp_path, epoch=1, step=10, val_loss=0.1)
        newest = save(tmp_path, epoch=2, step=20, val_loss=9.0)
        assert latest_checkpoint(tmp_path).path == newest

    def test_none_for_empty_folder(self, tmp_path):
        assert latest_checkpoint(tmp_path) is None


class TestNewest:
    def test_highest_step_then_newest_timestamp(self, tmp_path):
        save(tmp_path, epoch=1, step=10, val_loss=0.1)
        top = save(tmp_path, epoch=2, step=20, val_loss=9.0)
        listed = scan_checkpoints(tmp_path).checkpoints
        assert newest(listed).path == top
        later = replace(newest(listed), timestamp="2099-01-01T00:00:00", path=tmp_path / "z.pt")
        assert newest([*listed, later]) is later

    def test_none_for_no_entries(self):
        assert newest([]) is None
        assert newest(iter(())) is None


class TestResultsFromScan:
    def test_same_as_recover_training_results(self, tmp_path):
        save(tmp_path, epoch=1, step=20, val_loss=1.5, history=_history(2))
        save(tmp_path, epoch=2, step=30, val_loss=2.5, history=_history(3))
        scan = scan_checkpoints(tmp_path)
        assert results_from_scan(scan, tmp_path) == recover_training_results(tmp_path)

    def test_empty_scan_names_the_skipped_files(self, tmp_path):
        scan = recovery.ScanResult([], [(tmp_path / "empty.pt", "empty (0 bytes)")])
        with pytest.raises(NoCheckpointsError, match=r"1 entry skipped: empty.pt: empty"):
            results_from_scan(scan, tmp_path)


class TestRecoverTrainingResults:
    def test_results_from_metadata(self, tmp_path):
        config = {"model": {"n_layer": 2}, "training": {"epochs": 3}}
        best = save(tmp_path, epoch=1, step=20, val_loss=1.5, history=_history(2), config=config)
        latest = save(tmp_path, epoch=2, step=30, val_loss=2.5, history=_history(3), config=config)
        results = recover_training_results(tmp_path)
        assert results["checkpoint_path"] == str(best) and results["latest_checkpoint_path"] == str(latest)
        assert (results["best_epoch"], results["best_val_loss"]) == (1, 1.5)
        assert results["epochs"] == [0, 1, 2] and results["val_losses"] == [3.5, 2.5, 1.5]
        assert results["config"] == config and len(results["checkpoints"]) == 2

    def test_history_rebuilt_from_legacy_files(self, tmp_path):
        for epoch, val in [(0, 3.0), (1, 2.0)]:
            write_legacy(tmp_path, epoch=epoch, step=epoch * 10, val_loss=val)
        results = recover_training_results(tmp_path)
        assert results["epochs"] == [0, 1] and results["val_losses"] == [3.0, 2.0]

    def test_no_checkpoints(self, tmp_path):
        (tmp_path / "empty.pt").write_bytes(b"")
        with pytest.raises(NoCheckpointsError, match=r"no valid checkpoint \(1 entry skipped: empty.pt"):
            recover_training_results(tmp_path)

    def test_missing_folder(self, tmp_path):
        with pytest.raises(NoCheckpointsError, match="does not exist[\\s\\S]*Fix: train first"):
            recover_training_results(tmp_path / "nope")


class TestFormatCheckpointTable:
    def test_rows_and_skips(self, tmp_path):
        path = save(tmp_path, epoch=7, step=70, val_loss=1.234567)
        table = format_checkpoint_table(list_checkpoints(tmp_path), [(Path("x.pt"), "empty")])
        assert "1.2346" in table and path.name in table and table.endswith("Skipped x.pt: empty")

    def test_empty(self):
        assert "(no valid checkpoints)" in format_checkpoint_table([])


class TestMain:
    def test_prints_table(self, tmp_path, capsys):
        save(tmp_path, epoch=3, step=30, val_loss=1.0)
        assert main([str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "checkpoint_epoch0003_step000030" in out and "epoch" in out

    def test_empty_folder_exit_code(self, tmp_path, capsys):
        assert main([str(tmp_path)]) == 1
        assert "(no valid checkpoints)" in capsys.readouterr().out

    def test_module_entry_point(self, tmp_path):
        save(tmp_path, epoch=1, step=1)
        (tmp_path / "empty.pt").write_bytes(b"")
        done = subprocess.run(
            [sys.executable, "-m", "utils.training.engine.recovery", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and "checkpoint_epoch0001_step000001" in done.stdout
        assert "Skipped empty.pt" in done.stdout and "RuntimeWarning" not in done.stderr


class TestFolderThatIsOneCheckpoint:
    def test_a_stray_index_beside_our_checkpoints_does_not_hide_them(self, tmp_path):
        paths = [save(tmp_path, epoch=i, step=i) for i in (1, 2)]
        (tmp_path / ".metadata").write_bytes(b"\x80\x04N.")  # as a dcp.save into the same folder leaves
        (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
        assert sorted(r.path for r in scan_checkpoints(tmp_path).checkpoints) == sorted(paths)
