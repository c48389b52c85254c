"""Saves that cannot succeed: read-only folders, a path that is a file, a full disk, a write that
fails part-way, a Drive that disconnects at fsync. Every one raises CheckpointSaveError, loses
nothing, leaves no temporary file, and the training loop says what happened and what to do.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.loading import load_model_weights
from utils.training.engine.naming import is_temporary_file
from utils.training.engine.recovery import list_checkpoints

from .corpus import fresh_model, write_base_checkpoint
from .filesystems import failing_write, read_only_folder, small_disk
from .report import count, note
from .training_setup import load_data, run_training, training_config

SECTION = "save faults (tests/reliability/filesystems.py)"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_next(folder: Path, step: int = 24) -> Path:
    return save_checkpoint(folder, fresh_model(seed=step), epoch=1, global_step=step,
                           metrics={"train_loss": 1.0, "val_loss": 1.1, "learning_rate": 1e-3})  # fmt: skip


def assert_nothing_lost(folder: Path, earlier: Path, earlier_digest: str) -> None:
    """The earlier checkpoint is byte-for-byte intact and loads; no other file, no temporary file."""
    assert sorted(os.listdir(folder)) == [earlier.name]
    assert digest(earlier) == earlier_digest
    assert [info.path for info in list_checkpoints(folder)] == [earlier]
    assert load_model_weights(fresh_model(), earlier, "cpu").verified


@pytest.fixture
def earlier(tmp_path) -> tuple[Path, Path, str]:
    """A folder holding one good checkpoint: (folder, file, sha256)."""
    folder = tmp_path / "checkpoints"
    path = write_base_checkpoint(folder)
    return folder, path, digest(path)


@pytest.fixture(scope="module")
def data():
    return load_data()


class TestSaveIntoReadOnlyFolder:
    @pytest.mark.parametrize("real", [True, False], ids=["real-if-possible", "simulated"])
    def test_save_fails_clearly_and_nothing_is_lost(self, earlier, real):
        folder, path, sha = earlier
        with read_only_folder(folder, real=real) as how:
            assert real or how.startswith("simulated")
            if real:
                note(SECTION, "read-only folder made by", how)
            with pytest.raises(
                CheckpointSaveError, match="Read-only file system|Permission denied"
            ) as caught:
                save_next(folder)
            assert_nothing_lost(folder, path, sha)  # listing and loading still work
        assert str(folder) in str(caught.value) and caught.value.fix
        count(SECTION, "failed saves: CheckpointSaveError, earlier file intact, no temporary file")

    def test_training_reports_the_failure_and_continues(self, earlier, data, capsys):
        folder, path, sha = earlier
        with read_only_folder(folder):
            run = run_training(
                folder, data, training_config(epochs=1, max_batches_per_epoch=3), resume="none"
            )
            out = capsys.readouterr().out
            assert_nothing_lost(folder, path, sha)
        assert len(run.save_failures) == 3 and run.global_step == 3
        assert out.count("CHECKPOINT NOT SAVED") == 3 and "Earlier checkpoints are intact" in out
        assert "3 checkpoint save(s) failed" in out


class TestSaveIntoAPathThatIsAFile:
    def test_save_checkpoint_raises_and_keeps_the_file(self, tmp_path):
        not_a_folder = tmp_path / "checkpoints"
        not_a_folder.write_text("notes")
        with pytest.raises(CheckpointSaveError, match="checkpoints") as caught:
            save_next(not_a_folder)
        assert not_a_folder.read_text() == "notes" and "Fix: " in str(caught.value)
        assert list_checkpoints(not_a_folder, on_skip=None) == []

    def test_train_refuses_before_any_training_time_is_spent(self, tmp_path, data):
        not_a_folder = tmp_path / "checkpoints"
        not_a_folder.write_text("notes")
        with pytest.raises(
            CheckpointSaveError, match="cannot create the checkpoint folder[\\s\\S]*CHECKPOINT_DIR"
        ):
            run_training(not_a_folder, data, training_config(epochs=1), resume="none")


# where the atomic save fails, with the error a real system gives there; the third value is the
# number of bytes written before the failure (a float: that fraction of the file; negative: from the end)
FAILURES = {
    "open-EROFS": ("open", errno.EROFS, 0),
    "open-EACCES": ("open", errno.EACCES, 0),
    "write-ENOSPC-at-byte-0": ("write", errno.ENOSPC, 0),
    "write-ENOSPC-at-byte-1": ("write", errno.ENOSPC, 1),
    "write-ENOSPC-in-zip-header": ("write", errno.ENOSPC, 40),
    "write-ENOSPC-at-4KiB": ("write", errno.ENOSPC, 4096),
    "write-ENOSPC-in-tensors": ("write", errno.ENOSPC, 0.5),
    "write-ENOSPC-near-the-end": ("write", errno.ENOSPC, 0.99),
    "write-ENOSPC-in-metadata-record": ("write", errno.ENOSPC, -600),
    "write-ENOSPC-last-byte": ("write", errno.ENOSPC, -1),
    "write-EIO": ("write", errno.EIO, 0.2),
    "fsync-ENOTCONN-drive-disconnected": ("fsync", errno.ENOTCONN, 0),
    "fsync-EIO": ("fsync", errno.EIO, 0),
    "replace-EIO": ("replace", errno.EIO, 0),
}


@pytest.fixture(scope="module")
def new_size(tmp_path_factory) -> int:
    """The size of the file save_next writes."""
    return save_next(tmp_path_factory.mktemp("size")).stat().st_size


class TestSaveCheckpointWhenTheWriteFails:
    @pytest.mark.parametrize("name", FAILURES)
    def test_raises_save_error_and_loses_nothing(self, earlier, new_size, name):
        folder, path, sha = earlier
        at, code, room = FAILURES[name]
        room = int(room * new_size) if isinstance(room, float) else room if room >= 0 else new_size + room
        assert room < new_size
        with failing_write(folder, code, at=at, room=room):
            with pytest.raises(CheckpointSaveError) as caught:
                save_next(folder)
        assert os.strerror(code) in str(caught.value)
        assert "Earlier checkpoints are intact" in caught.value.fix
        assert_nothing_lost(folder, path, sha)
        count(SECTION, "failed saves: CheckpointSaveError, earlier file intact, no temporary file")

    def test_the_next_save_after_the_failure_succeeds(self, earlier):
        folder, path, _ = earlier
        with failing_write(folder, errno.ENOSPC, room=10_000), pytest.raises(CheckpointSaveError):
            save_next(folder)
        new = save_next(folder, step=36)
        assert {info.path for info in list_checkpoints(folder)} == {path, new}
        assert not [n for n in os.listdir(folder) if is_temporary_file(n)]


class TestFullDisk:
    @pytest.fixture(params=[True, False], ids=["real-if-possible", "simulated"])
    def disk(self, tmp_path, request):
        """A disk with room for one checkpoint and a half (tmpfs when mounting works, and simulated)."""
        size = write_base_checkpoint(tmp_path / "probe").stat().st_size
        with small_disk(tmp_path / "disk", int(size * 1.5), real=request.param) as how:
            assert request.param or how.startswith("simulated")
            if request.param:
                note(SECTION, "full disk made by", how)
            yield tmp_path / "disk", how

    def test_second_save_fails_and_the_first_survives(self, disk):
        folder, how = disk
        first = write_base_checkpoint(folder)
        sha = digest(first)
        with pytest.raises(CheckpointSaveError, match="No space left on device") as caught:
            write_base_checkpoint(folder, step=24)
        assert "Free disk space" in caught.value.fix and how
        assert_nothing_lost(folder, first, sha)
        count(SECTION, "failed saves: CheckpointSaveError, earlier file intact, no temporary file")

    @pytest.mark.parametrize("stop", [False, True], ids=["continues", "stop_on_save_error"])
    def test_training_says_what_failed_and_how_to_fix_it(self, disk, data, capsys, stop):
        folder, _ = disk
        config = training_config(epochs=1, max_batches_per_epoch=4, stop_on_save_error=stop)
        run = run_training(folder, data, config, resume="none")
        out = capsys.readouterr().out
        assert len(run.checkpoints) == 1 and len(run.save_failures) == (1 if stop else 3)
        assert "CHECKPOINT NOT SAVED (epoch 1, step 2)" in out and "No space left on device" in out
        assert "Free disk space" in out and "Earlier checkpoints are intact" in out
        if stop:
            assert (
                "Training stopped: checkpoint save failed at epoch 1, step 2" in out and run.global_step == 2
            )
            assert "RESUME='latest'" in out
        else:
            assert run.global_step == 4 and "3 checkpoint save(s) failed" in out
        assert [info.path for info in list_checkpoints(folder)] == run.checkpoints
        assert not [n for n in os.listdir(folder) if is_temporary_file(n)]
        count(SECTION, "train() runs on a full disk that reported every failed save", 1)
