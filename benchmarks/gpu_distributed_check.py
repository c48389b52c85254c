"""torchrun on a GPU: NCCL, one process, DDP then FSDP2, and the results loaded the notebook's way.

    python benchmarks/gpu_distributed_check.py [--out DIR] [--device cpu]

1. ``torchrun --standalone --nproc_per_node=1 -m utils.training.launch --strategy ddp --device cuda``:
   the tiny preset, 2 epochs, bf16 (NCCL, since the device is CUDA); a checkpoint file per epoch;
2. the same with ``--strategy fsdp``: a sharded checkpoint folder per epoch;
3. in this process, as the notebook does it: ``list_checkpoints`` (files and folders),
   ``load_model_weights`` of the newest of each into a fresh model on ``cuda`` (Cell 34), and
   ``restore_training_state`` of the FSDP folder (the notebook's ``RESUME``); the loaded weights
   must equal what each run wrote.

Not a pytest test: CI has no GPU (``--device cpu`` runs the same steps with gloo, to try the
script anywhere). Prints one line per check with its figures and writes them all to
``DIR/gpu_distributed_check.json``; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from utils.model import GPT, config_for_preset  # noqa: E402
from utils.training.engine.loading import load_model_weights  # noqa: E402
from utils.training.engine.recovery import list_checkpoints  # noqa: E402
from utils.training.optim import build_optimizer, build_scheduler  # noqa: E402
from utils.training.resume import restore_training_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--preset", "tiny", "--epochs", "2", "--max-batches-per-epoch", "20", "--eval-batches", "4",
         "--batch-size", "16", "--keep-last", "10"]  # fmt: skip


def train_under_torchrun(folder: Path, strategy: str, device: str) -> dict:
    """One torchrun start of 1 process; returns what it printed and how long it took."""
    precision = "bf16" if device == "cuda" else "off"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               "-m", "utils.training.launch", *FLAGS, "--strategy", strategy, "--device", device,
               "--mixed-precision", precision, "--checkpoint-dir", str(folder)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=500,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    header = next((line for line in done.stdout.splitlines() if line.startswith("🖥️")), "")
    return {
        "check": f"train {strategy} under torchrun",
        "ok": done.returncode == 0 and f"backend {'nccl' if device == 'cuda' else 'gloo'}" in header,
        "seconds": round(time.perf_counter() - started, 1),
        "header": header,
        "last_lines": done.stdout.strip().splitlines()[-3:],
        "stderr_tail": done.stderr[-1500:] if done.returncode else "",
    }


def load_the_notebooks_way(folder: Path, device: str) -> dict:
    """Cell 33's listing and Cell 34's loader on the newest checkpoint of ``folder``."""
    listed = list_checkpoints(folder)
    newest = max(listed, key=lambda info: info.global_step or -1)
    model = GPT(config_for_preset("tiny"))
    report = load_model_weights(model, newest.path, device)
    on_device = {p.device.type for p in model.parameters()} == {torch.device(device).type}
    return {
        "check": f"load {newest.path.name} ({newest.kind}) like Cell 34",
        "ok": bool(report.verified) and on_device and len(listed) == 2,
        "listed": [info.path.name for info in listed],
        "verified": report.verified,
        "seconds": round(report.elapsed_s, 3),
    }


def resume_in_one_process(folder: Path, device: str) -> dict:
    """The notebook's RESUME of the newest sharded folder, into a plain model."""
    path = max((info for info in list_checkpoints(folder)), key=lambda info: info.global_step or -1).path
    model = GPT(config_for_preset("tiny")).to(device)
    optimizer = build_optimizer(model, 1e-3, 0.1)
    scheduler = build_scheduler(optimizer, 10, 40)
    state = restore_training_state(path, model, optimizer, scheduler)
    return {"check": f"RESUME {path.name} in one process", "ok": state.global_step > 0,
            "report": state.render().splitlines()}  # fmt: skip


def _checked(check, folder: Path, device: str) -> dict:
    """Run one check; an exception is its failure, reported like the others (the script goes on)."""
    try:
        return check(folder, device)
    except Exception as error:  # a check script reports every failure rather than stopping at the first
        return {
            "check": f"{check.__name__}({folder.name})",
            "ok": False,
            "error": f"{type(error).__name__}: {error}",
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA GPU here: run this on a GPU machine (or with --device cpu to try the steps).")
        return 1
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_distributed_"))
    results = []
    for strategy in ("ddp", "fsdp"):
        results.append(train_under_torchrun(out / strategy, strategy, args.device))
        if results[-1]["ok"]:
            results.append(_checked(load_the_notebooks_way, out / strategy, args.device))
    if results[-1]["ok"]:
        results.append(_checked(resume_in_one_process, out / "fsdp", args.device))
    for result in results:
        figures = ", ".join(
            f"{k}={v}" for k, v in result.items() if k in ("seconds", "header", "verified", "error")
        )
        print(f"{'✅' if result['ok'] else '❌'} {result['check']}: {figures}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    (out / "gpu_distributed_check.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"Details: {out / 'gpu_distributed_check.json'}")
    return 0 if all(result["ok"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
