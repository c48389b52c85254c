"""Start the launcher under torchrun (2 processes, gloo on the CPU) or in one process, and read what it left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from utils.training.engine.sharded_folder import checkpoint_folders, read_folder_record
from utils.training.engine.sources.sharded import ShardedSource, folder_probe

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("launch_child.py")
# The tiny preset, 3 batches of 4 per process and epoch, 2 epochs: seconds per run.
FAST = ["--preset", "tiny", "--epochs", "2", "--max-batches-per-epoch", "3", "--eval-batches", "2",
        "--batch-size", "4", "--device", "cpu", "--keep-last", "10", "--learning-rate", "3e-3"]  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def job(name: str, strategy: str, checkpoint_dir: Path, *extra: str) -> list[str]:
    """One job of launch_child.py: its name and its launcher flags."""
    return ["--job", name, *FAST, "--strategy", strategy, "--checkpoint-dir", str(checkpoint_dir), *extra]


def run(
    command: list[str], *, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``command`` in the repository root; with ``check``, fail the test with its output on an error."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=420)
    if check:
        assert done.returncode == 0, (
            f"{' '.join(command[:6])} ... failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        )
    return done


def torchrun_jobs(out: Path, *jobs: list[str], **kwargs) -> subprocess.CompletedProcess:
    """The jobs, one after the other, in one torchrun start of 2 processes."""
    return run([*TORCHRUN, str(CHILD), str(out), *(part for one in jobs for part in one)], **kwargs)


def one_process_jobs(out: Path, *jobs: list[str], **kwargs) -> subprocess.CompletedProcess:
    """The jobs in one process, without torchrun."""
    return run([sys.executable, str(CHILD), str(out), *(part for one in jobs for part in one)], **kwargs)


def result(out: Path, name: str) -> dict:
    """What a job's rank 0 wrote: final weights, per-step losses, history, report."""
    return torch.load(out / name / "final.pt", weights_only=True)


def loaded(out: Path, name: str) -> dict[str, torch.Tensor]:
    """A job's weights right after its resume, before any step."""
    return torch.load(out / name / "loaded.pt", weights_only=True)["model"]


def different(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """The names whose tensors are not bit-identical (or present in only one)."""
    return sorted(set(a) ^ set(b)) + [name for name in a if name in b and not torch.equal(a[name], b[name])]


def listed_folders(checkpoint_dir: Path) -> list[Path]:
    """The sharded checkpoints a listing shows: named like ours and committed (record inside), by step."""
    found = []
    for folder in checkpoint_folders(checkpoint_dir):
        try:
            found.append((read_folder_record(folder)["global_step"], folder))
        except Exception:  # an uncommitted folder is not a checkpoint
            continue
    return [folder for _, folder in sorted(found)]


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's weights as one process reads them: a file with torch.load, a folder through DCP."""
    if path.is_file():
        return torch.load(path, weights_only=True)["model_state_dict"]
    with ShardedSource().open_weights(folder_probe(path)) as weights:
        return {name: weights.tensor(name).clone() for name in weights}
