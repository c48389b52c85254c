"""Background saves and the mirror under faults: SIGKILL half-way through a file, full disks, read-only folders.

The kills use async_child.py, a real training run whose background write (or mirror copy) of
one step stops half-way through its file; the test records what the folders hold at that
moment, SIGKILLs the process, and checks that every earlier checkpoint is intact and that no
half file is listed, locally or in the mirror.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from utils.training.engine.loading import load_model_weights
from utils.training.engine.naming import is_temporary_file
from utils.training.engine.recovery import list_checkpoints, scan_checkpoints

from .corpus import fresh_model, write_base_checkpoint
from .filesystems import read_only_folder, small_disk
from .report import count, note
from .training_setup import load_data, run_training, training_config

CHILD = Path(__file__).with_name("async_child.py")
ROOT = Path(__file__).resolve().parents[2]
SECTION = "background saves and the mirror (tests/reliability/test_async_faults.py)"
HANG_AT = 5


def digests(folder: Path) -> dict[str, str]:
    """name -> sha256 of every listed checkpoint."""
    return {
        info.name: hashlib.sha256(info.path.read_bytes()).hexdigest() for info in list_checkpoints(folder)
    }


def temporaries(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if is_temporary_file(name)] if folder.is_dir() else []


def steps(folder: Path) -> list[int]:
    return sorted(info.global_step for info in list_checkpoints(folder))


def assert_all_listed_files_load(folder: Path) -> None:
    scan = scan_checkpoints(folder)
    assert scan.skipped == []
    for info in scan.checkpoints:
        torch.load(info.path, map_location="cpu", weights_only=True)
        assert load_model_weights(fresh_model(), info.path, "cpu").verified


def run_until_hung(tmp_path: Path, hang: str, *, then=lambda local: True) -> tuple[Path, Path, dict, dict]:
    """Start the child, wait until it hangs (and ``then(local)``), record the folders, SIGKILL it.

    Returns:
        (local, mirror, local digests, mirror digests) as recorded just before the kill; the
        local ones are None for a hung mirror (training, and local retention, go on meanwhile).
    """
    local, mirror, ready = tmp_path / "local", tmp_path / "mirror", tmp_path / "ready"
    command = [sys.executable, str(CHILD), str(local), str(mirror), str(ready), "--hang", hang,
               "--at-step", str(HANG_AT)]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (ready.exists() and then(local)):
            assert child.poll() is None, f"the child ended: {child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the child never reached the hang"
            time.sleep(0.02)
        time.sleep(0.2)  # let a mirror copy that is not hung finish, so the recorded state is stable
        recorded = (digests(local) if hang == "write" else None), digests(mirror)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    return local, mirror, *recorded


@pytest.mark.slow
class TestSigkillDuringABackgroundWrite:
    def test_earlier_checkpoints_intact_and_no_half_file_listed_locally_or_in_the_mirror(self, tmp_path):
        local, mirror, before_local, before_mirror = run_until_hung(tmp_path, "write")
        assert temporaries(local), "the kill landed inside the background write (its temporary file is left)"
        assert digests(local) == before_local and steps(local)[-1] == HANG_AT - 1
        assert_all_listed_files_load(local)
        assert digests(mirror) == before_mirror and set(before_mirror) <= set(before_local) | set(
            before_mirror
        )
        for name, digest in digests(mirror).items():  # every mirror file is a complete copy of a local one
            assert name not in before_local or before_local[name] == digest
        assert_all_listed_files_load(mirror)
        note(SECTION, "SIGKILL in a background write: listed files afterwards (local + mirror)",
             len(before_local) + len(before_mirror))  # fmt: skip


@pytest.mark.slow
class TestSigkillDuringAMirrorCopy:
    def test_no_half_copy_listed_and_training_was_not_held_up(self, tmp_path):
        # Kill only once training has saved three more checkpoints past the hung copy.
        local, mirror, before_local, before_mirror = run_until_hung(
            tmp_path, "mirror", then=lambda folder: bool(steps(folder)) and steps(folder)[-1] >= HANG_AT + 3
        )
        assert temporaries(mirror), "the kill landed inside the mirror copy (its temporary file is left)"
        assert digests(mirror) == before_mirror and max(steps(mirror)) == HANG_AT - 1
        assert_all_listed_files_load(mirror)
        assert before_local is None and steps(local)[-1] >= HANG_AT + 3  # training went on past the hang
        assert_all_listed_files_load(local)
        note(SECTION, "steps saved locally while the mirror copy hung", steps(local)[-1] - HANG_AT)


@pytest.fixture(scope="module")
def data():
    return load_data()


class TestBackgroundSaveOnAFullDisk:
    @pytest.fixture(params=[True, False], ids=["real-if-possible", "simulated"])
    def disk(self, tmp_path, request):
        size = write_base_checkpoint(tmp_path / "probe").stat().st_size
        with small_disk(tmp_path / "disk", int(size * 1.5), real=request.param) as how:
            yield tmp_path / "disk", how

    @pytest.mark.parametrize("stop", [False, True], ids=["continues", "stop_on_save_error"])
    def test_reported_and_training_goes_on_or_stops(self, disk, data, capsys, stop):
        folder, how = disk
        config = training_config(epochs=1, max_batches_per_epoch=4, stop_on_save_error=stop, async_save=True)
        run = run_training(folder, data, config, resume="none")
        out = capsys.readouterr().out
        assert len(run.checkpoints) == 1 and "CHECKPOINT NOT SAVED (epoch 1, step 2)" in out
        assert "No space left on device" in out and "Earlier checkpoints are intact" in out and how
        if stop:
            assert run.stop_reason == "checkpoint save failed at epoch 1, step 2" and run.global_step < 4
        else:
            assert (
                run.global_step == 4 and len(run.save_failures) == 3 and "3 checkpoint save(s) failed" in out
            )
        assert [info.path for info in list_checkpoints(folder)] == run.checkpoints and not temporaries(folder)
        count(SECTION, "train(async_save=True) on a full disk: every failed save reported", 1)


class TestBackgroundSaveIntoAReadOnlyFolder:
    def test_every_save_reported_and_nothing_lost(self, tmp_path, data, capsys):
        folder = tmp_path / "checkpoints"
        earlier = write_base_checkpoint(folder)
        sha = hashlib.sha256(earlier.read_bytes()).hexdigest()
        with read_only_folder(folder) as how:
            run = run_training(folder, data, training_config(epochs=1, max_batches_per_epoch=3, async_save=True),
                               resume="none")  # fmt: skip
            out = capsys.readouterr().out
        assert len(run.save_failures) == 3 and run.global_step == 3 and how
        assert out.count("CHECKPOINT NOT SAVED") == 3 and "3 checkpoint save(s) failed" in out
        assert (
            os.listdir(folder) == [earlier.name] and hashlib.sha256(earlier.read_bytes()).hexdigest() == sha
        )


class TestMirrorIntoAReadOnlyFolder:
    @pytest.mark.parametrize("real", [True, False], ids=["real-if-possible", "simulated"])
    def test_training_completes_and_the_mirror_reports_each_file(self, tmp_path, data, capsys, real):
        mirror = tmp_path / "mirror"
        mirror.mkdir()
        with read_only_folder(mirror, real=real) as how:
            config = training_config(
                epochs=1, max_batches_per_epoch=3, async_save=True, mirror_dir=str(mirror)
            )
            run = run_training(tmp_path / "local", data, config, resume="none")
            out = capsys.readouterr().out
        assert run.global_step == 3 and run.save_failures == [] and len(run.checkpoints) == 3
        assert len(run.mirror.failures) == 3 and out.count("MIRROR COPY FAILED") == 3
        assert "Read-only file system" in out or "Permission denied" in out
        assert list_checkpoints(mirror) == [] and not temporaries(mirror)
        if real:
            note(SECTION, "read-only mirror made by", how)
