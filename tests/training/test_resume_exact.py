"""Exactness: a run killed by SIGKILL after a checkpoint and resumed in a new process ends
bit-for-bit like the uninterrupted run (issue 5, item 3).

Each run is a real child process; the "interrupted" run is killed by the parent with
SIGKILL as soon as the chosen checkpoint file appears, so nothing is flushed or saved
politely. The resumed process continues from that file to the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from utils.notebook.durability import local_first
from utils.training.engine.naming import parse_checkpoint_filename
from utils.training.resume import resolve_resume_source

CHILD = Path(__file__).with_name("resume_child.py")
ROOT = Path(__file__).resolve().parents[2]
EPOCHS, SAVE_EVERY = 3, 4  # 6 batches per epoch: mid-epoch saves at steps 4, 8, 16


def _run_child(checkpoint_dir: Path, out: Path, *extra: str) -> None:
    command = [sys.executable, str(CHILD), str(checkpoint_dir), str(out), "--epochs", str(EPOCHS), *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _kill_after(checkpoint_dir: Path, step: int) -> Path:
    """Start a slow run, SIGKILL it once the checkpoint of ``step`` exists; return that file."""
    command = [sys.executable, str(CHILD), str(checkpoint_dir), os.devnull, "--epochs", str(EPOCHS),
               "--save-every", str(SAVE_EVERY), "--step-delay", "0.15"]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            found = [
                p
                for p in checkpoint_dir.glob("checkpoint_*.pt")
                if parse_checkpoint_filename(p).global_step == step
            ]
            if found:
                child.send_signal(signal.SIGKILL)
                break
            assert child.poll() is None, f"the child ended before step {step}: {child.stderr.read().decode()}"
            time.sleep(0.01)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, "the run must be killed, not finish"
    assert found, f"no checkpoint of step {step} appeared"
    return found[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("uninterrupted")
    _run_child(folder / "ckpt", folder / "final.pt", "--save-every", str(SAVE_EVERY))
    return torch.load(folder / "final.pt", weights_only=True)


def _assert_same_run(resumed: dict, reference: dict) -> None:
    assert resumed["step_losses"] == reference["step_losses"]
    assert len(resumed["step_losses"]) == EPOCHS * 6
    assert resumed["history"] == reference["history"]
    assert resumed["model"].keys() == reference["model"].keys()
    different = [k for k in reference["model"] if not torch.equal(resumed["model"][k], reference["model"][k])]
    assert different == []


@pytest.mark.slow
class TestResumeAfterSigkill:
    @pytest.mark.parametrize("kill_at_step", [6, 8], ids=["epoch-boundary", "mid-epoch"])
    def test_resumed_run_matches_uninterrupted(self, tmp_path, uninterrupted, kill_at_step):
        checkpoint = _kill_after(tmp_path / "ckpt", kill_at_step)
        data_state = torch.load(checkpoint, weights_only=True)["data_state"]
        assert (data_state["batch_in_epoch"] == 6) == (kill_at_step == 6)  # boundary vs mid-epoch
        _run_child(tmp_path / "ckpt", tmp_path / "resumed.pt", "--save-every", str(SAVE_EVERY),
                   "--resume", str(checkpoint))  # fmt: skip
        _assert_same_run(torch.load(tmp_path / "resumed.pt", weights_only=True), uninterrupted)
        steps = sorted(parse_checkpoint_filename(p).global_step for p in (tmp_path / "ckpt").glob("*.pt"))
        assert steps[-1] == EPOCHS * 6  # names continue from the step reached


def _kill_once_mirrored(checkpoint_dir: Path, mirror: Path, step: int) -> None:
    """A run with background saves and a mirror, SIGKILLed once the mirror holds ``step`` (or later)."""
    command = [sys.executable, str(CHILD), str(checkpoint_dir), os.devnull, "--epochs", str(EPOCHS),
               "--save-every", str(SAVE_EVERY), "--step-delay", "0.15", "--async-save", "--mirror", str(mirror)]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    try:
        while not any(
            parse_checkpoint_filename(p).global_step >= step for p in mirror.glob("checkpoint_*.pt")
        ):
            assert child.poll() is None, f"the child ended early: {child.stderr.read().decode()}"
            assert time.monotonic() < deadline, f"the mirror never received step {step}"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.slow
class TestResumeFromTheMirrorAlone:
    def test_the_local_disk_lost_the_mirror_resumes_bit_for_bit(self, tmp_path, uninterrupted):
        local, mirror = tmp_path / "ckpt", tmp_path / "mirror"
        _kill_once_mirrored(local, mirror, step=8)
        shutil.rmtree(local)  # the runtime is gone, and its disk with it
        storage = local_first(str(tmp_path / "fresh"), str(mirror))  # Cell 4 in the new runtime
        assert storage.restored and not storage.failed
        source = resolve_resume_source("latest", storage.checkpoint_dir)  # RESUME = "latest"
        assert parse_checkpoint_filename(source).global_step >= 8
        _run_child(Path(storage.checkpoint_dir), tmp_path / "resumed.pt", "--save-every", str(SAVE_EVERY),
                   "--resume", str(source), "--async-save", "--mirror", str(mirror))  # fmt: skip
        _assert_same_run(torch.load(tmp_path / "resumed.pt", weights_only=True), uninterrupted)
