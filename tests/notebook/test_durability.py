"""Cells 4, 6, 33, 34: local first, copied back from the mirror on a fresh runtime, probe, pending saves."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch

import utils.notebook.durability as durability
from utils.notebook.durability import (
    check_mirror_folder,
    is_on_drive,
    local_first,
    probe_write_speed,
    wait_for_pending_saves,
)
from utils.training.engine.async_save import BackgroundWriter
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.mirror import Mirror, copy_with_crc
from utils.training.engine.naming import is_temporary_file
from utils.training.engine.recovery import list_checkpoints


def names(folder) -> list[str]:
    return sorted(os.listdir(folder))


class TestLocalFirst:
    def test_without_a_mirror_nothing_changes(self, tmp_path):
        storage = local_first(str(tmp_path / "ck"), None)
        assert (storage.checkpoint_dir, storage.mirror_dir, storage.lines()) == (
            str(tmp_path / "ck"),
            None,
            [],
        )

    def test_a_fresh_runtime_gets_the_mirrors_checkpoints_back(self, tmp_path, checkpoint_dir):
        local = tmp_path / "fresh" / "ck"
        storage = local_first(str(local), str(checkpoint_dir))
        assert storage.checkpoint_dir == str(local) and storage.mirror_dir == str(checkpoint_dir)
        assert names(local) == names(checkpoint_dir) and len(storage.restored) == 3
        assert all((local / n).read_bytes() == (checkpoint_dir / n).read_bytes() for n in names(local))
        text = "\n".join(storage.lines())
        assert f"Fresh runtime: {local} was empty, so the mirror's 3 checkpoint(s) were copied back" in text
        assert 'RESUME = "latest" and Cells 33-35 use them' in text
        assert f"A disconnect keeps every checkpoint already copied to {checkpoint_dir}" in text

    def test_a_local_folder_with_checkpoints_is_left_alone(self, tmp_path, checkpoint_dir, tiny_model):
        from utils.training.engine.checkpoint import save_checkpoint

        local = tmp_path / "local"
        save_checkpoint(local, tiny_model, None, epoch=5, global_step=50, metrics={"val_loss": 1.0})
        storage = local_first(str(local), str(checkpoint_dir))
        assert storage.restored == () and len(list_checkpoints(local)) == 1

    def test_an_empty_mirror_copies_nothing(self, tmp_path):
        storage = local_first(str(tmp_path / "local"), str(tmp_path / "mirror"))
        assert storage.restored == () and not (tmp_path / "local").exists()

    def test_a_file_that_cannot_be_copied_back_is_reported_and_the_others_are(
        self, tmp_path, checkpoint_dir, monkeypatch
    ):
        broken, real = names(checkpoint_dir)[0], durability.mirror_copy

        def flaky(source, folder, **kwargs):
            if Path(source).name == broken:
                raise OSError(5, "Input/output error")
            return real(source, folder, **kwargs)

        monkeypatch.setattr(durability, "mirror_copy", flaky)
        storage = local_first(str(tmp_path / "local"), str(checkpoint_dir))
        assert len(storage.restored) == 2 and storage.failed == (f"{broken}: Input/output error",)
        assert f"❌ Not copied back: {broken}: Input/output error (it stays in the mirror)" in storage.lines()
        assert not [n for n in names(tmp_path / "local") if is_temporary_file(n)]

    def test_too_little_local_disk_reads_and_writes_the_mirror_directly(
        self, tmp_path, checkpoint_dir, monkeypatch
    ):
        monkeypatch.setattr(durability, "_free_bytes", lambda folder: 1000)
        storage = local_first(str(tmp_path / "local"), str(checkpoint_dir))
        assert (storage.checkpoint_dir, storage.mirror_dir, storage.restored) == (
            str(checkpoint_dir),
            None,
            (),
        )
        assert "too little to copy back the mirror's 3 checkpoint(s)" in storage.lines()[0]
        assert f"directly in {checkpoint_dir}" in storage.lines()[0]


class TestProbeWriteSpeed:
    def test_measures_and_leaves_nothing_behind(self, tmp_path):
        assert probe_write_speed(tmp_path, 1 << 20) > 0 and os.listdir(tmp_path) == []

    def test_an_unwritable_folder_raises(self, tmp_path):
        with pytest.raises(OSError):
            probe_write_speed(tmp_path / "missing", 1024)


class TestCheckMirrorFolder:
    def test_no_mirror_says_how_to_get_one(self):
        report = check_mirror_folder("")
        assert report.path is None and "set MIRROR_DIR in Cell 3, or tick USE_DRIVE" in report.lines()[0]
        report.raise_if_unusable()  # nothing to stop for

    def test_creates_measures_and_counts(self, tmp_path, checkpoint_dir):
        report = check_mirror_folder(str(checkpoint_dir), probe_bytes=1 << 20)
        assert report.writable and report.write_bytes_per_s > 0 and report.checkpoints == 3
        assert "writable | free: " in report.lines()[1] and "checkpoints there: 3" in report.lines()[1]
        created = check_mirror_folder(str(tmp_path / "new" / "mirror"), probe_bytes=1024)
        assert created.writable and (tmp_path / "new" / "mirror").is_dir()

    def test_an_unusable_mirror_stops_the_notebook_with_the_fix(self, tmp_path):
        (tmp_path / "file").write_text("x")
        report = check_mirror_folder(str(tmp_path / "file" / "mirror"), probe_bytes=1024)
        assert not report.writable and "the mirror folder cannot be written" in report.problems[0]
        with pytest.raises(
            CheckpointSaveError, match="mount Google Drive again \\(Cell 4\\), or set MIRROR_DIR"
        ):
            report.raise_if_unusable()


class TestIsOnDrive:
    def test_only_paths_inside_the_drive_mount(self, tmp_path):
        root = tmp_path / "drive"
        assert is_on_drive(root / "MyDrive" / "ck", drive_root=str(root))
        assert not is_on_drive(tmp_path / "drive2" / "ck", drive_root=str(root))
        assert not is_on_drive(None) and not is_on_drive("")


class TestWaitForPendingSaves:
    def test_silent_when_nothing_is_pending(self):
        out = []
        assert wait_for_pending_saves(out.append) is False and out == []

    def test_waits_for_a_save_in_flight_and_a_mirror_copy(self, tmp_path):
        gate, out = threading.Event(), []

        def slow_write(path, snapshot):
            gate.wait(30)
            torch.save(snapshot, path)
            return path

        def slow_copy(source, target, buffer):
            gate.wait(30)
            return copy_with_crc(source, target, buffer)

        future = BackgroundWriter().save(tmp_path / "a.pt", {"x": torch.ones(1)}, slow_write)
        (tmp_path / "b.pt").write_bytes(b"b" * 100)
        mirror = Mirror(tmp_path / "mirror", retention=None, copy=slow_copy)
        mirror.enqueue(tmp_path / "b.pt")
        threading.Timer(0.2, gate.set).start()
        assert wait_for_pending_saves(out.append) is True
        assert future.done() and (tmp_path / "a.pt").exists() and (tmp_path / "mirror" / "b.pt").exists()
        assert (
            out[0].startswith("⏳ Waiting for a.pt")
            and f"mirror copy(ies) to {tmp_path / 'mirror'}" in out[0]
        )
        assert out[1].startswith("✅ Done after")

    def test_reports_a_save_that_failed_meanwhile(self, tmp_path):
        gate, out = threading.Event(), []

        def failing(path, snapshot):
            gate.wait(30)
            raise CheckpointSaveError(path, "injected: disk full")

        BackgroundWriter().save(tmp_path / "a.pt", {"x": torch.ones(1)}, failing)
        threading.Timer(0.1, gate.set).start()
        wait_for_pending_saves(out.append)
        assert any(
            line.startswith("⚠️  CHECKPOINT NOT SAVED:") and "injected: disk full" in line for line in out
        )
