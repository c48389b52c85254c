"""How exact is resume on a GPU? Prints one row per setting (not a pytest test: CI has no GPU).

    python tests/training/gpu_resume_check.py [--device cuda]

For each setting, runs the tiny preset for 3 epochs in one process, then resumes from its
mid-epoch checkpoint at step 8 in a fresh process, and compares final weights and
per-step losses. docs/resume.md quotes the result.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CHILD = Path(__file__).with_name("resume_child.py")
SETTINGS = [("off", False), ("off", True), ("bf16", False), ("bf16", True)]


def _child(folder: Path, out: Path, device: str, precision: str, deterministic: bool, *extra: str) -> None:
    command = [sys.executable, str(CHILD), str(folder), str(out), "--epochs", "3", "--save-every", "4",
               "--device", device, "--precision", precision, *(["--deterministic"] if deterministic else []), *extra]  # fmt: skip
    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    subprocess.run(command, check=True, env=env, capture_output=True)


def _compare(device: str, precision: str, deterministic: bool) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _child(folder / "a", folder / "a.pt", device, precision, deterministic)
        start = next(p for p in (folder / "a").glob("*_step000008_*.pt"))
        _child(folder / "b", folder / "b.pt", device, precision, deterministic, "--resume", str(start))
        a, b = (torch.load(folder / f"{n}.pt", weights_only=True) for n in "ab")
    equal = sum(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    worst = max((a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"])
    same_losses = sum(x == y for x, y in zip(a["step_losses"], b["step_losses"], strict=True))
    return (f"{device:5} {precision:5} deterministic={deterministic!s:5} | tensors equal {equal}/{len(a['model'])} "
            f"| max |diff| {worst:.3g} | step losses equal {same_losses}/{len(a['step_losses'])}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    device = parser.parse_args().device
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}")
    for precision, deterministic in SETTINGS:
        if device == "cpu" and precision == "bf16" and deterministic:
            continue
        print(_compare(device, precision, deterministic), flush=True)


if __name__ == "__main__":
    main()
