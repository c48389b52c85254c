"""Kill-test driver: fork a saver, SIGKILL it at a random moment, repeat; report what completed.

Run by test_save_kill.py as a subprocess. torch is imported once here and each
saver is a fork of this process, so that 20+ kills take seconds, not 20 torch
imports. Prints one JSON line per round: the checkpoints whose save_checkpoint
call returned before the kill, and the temporary files the kill left behind.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from utils.training.engine.checkpoint import save_checkpoint  # noqa: E402
from utils.training.engine.naming import is_temporary_file  # noqa: E402


def _save_forever(folder: Path, model: torch.nn.Module, round_index: int, report_fd: int) -> None:
    for index in range(1_000_000):
        step = round_index * 100_000 + index
        path = save_checkpoint(
            folder, model, epoch=round_index, global_step=step,
            metrics={"train_loss": 1.0, "val_loss": 1.0 + index, "learning_rate": 1e-3},
            retention=None, when=dt.datetime(2025, 1, 1) + dt.timedelta(seconds=step),
        )  # fmt: skip
        os.write(report_fd, f"{path}\n".encode())
    os._exit(0)


def _round(folder: Path, model: torch.nn.Module, round_index: int, delay: float) -> dict:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the saver
        os.close(read_fd)
        try:
            _save_forever(folder, model, round_index, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as reports:
        completed = reports.read().decode().split()
    temporary = [n for n in os.listdir(folder) if is_temporary_file(n)] if folder.exists() else []
    return {"round": round_index, "delay": delay, "completed": completed, "temporary": temporary}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--max-delay", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # no thread pool in the parent before fork()
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.Linear(512, 256))  # ~1 MB
    rng = random.Random(args.seed)
    for round_index in range(args.rounds):
        print(json.dumps(_round(args.folder, model, round_index, rng.uniform(0, args.max_delay))), flush=True)


if __name__ == "__main__":
    main()
