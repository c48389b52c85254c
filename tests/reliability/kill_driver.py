"""SIGKILL a real training run at random moments, resume it each time, record what survived.

    python tests/reliability/kill_driver.py FOLDER --kills 60 --seed 0 --max-delay 0.4

torch is imported once here; each training process is a fork of this one (warmed up
first), so a kill and a restart cost milliseconds, not a torch import. Each child
resumes from the latest checkpoint (RESUME='latest' through utils.training.resume),
reports on a pipe that its first training step begins, and trains the tiny preset
with a checkpoint after every step and the retention policy given. The parent waits
a random delay and kills it; then, with nothing writing, it lists the folder and
loads every listed file with ``load_model_weights`` and ``torch.load(weights_only=True)``.
One JSON line per kill: the delay, the listing ([name, step, val_loss, time]), the
skipped files, the files that failed to load, and the temporary files the kill left
behind (it landed inside a save).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import select
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.reliability.corpus import fresh_model  # noqa: E402
from tests.reliability.training_setup import Data, load_data, run_training, training_config  # noqa: E402
from utils.training.engine.loading import load_model_weights  # noqa: E402
from utils.training.engine.naming import is_temporary_file  # noqa: E402
from utils.training.engine.recovery import scan_checkpoints  # noqa: E402


def _child(folder: Path, data: Data, config) -> None:
    """The training process: resume, train until killed."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the loop prints epoch lines; the parent's stdout is for JSON only
    status = 1
    try:
        run_training(folder, data, config, resume="latest")
        status = 0
    finally:
        os._exit(status)


def _start(folder: Path, data: Data, config) -> tuple[int, int]:
    """Fork a trainer; returns (pid, read end of its ready pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _notify_when_training(write_fd)
        _child(folder, data, config)
    os.close(write_fd)
    return pid, read_fd


def _notify_when_training(fd: int) -> None:
    """Write one byte on ``fd`` when the first training step begins (after the resume)."""
    import utils.training.loop as loop

    original = loop._train_step

    def first_step(*args, **kwargs):
        if not first_step.told:
            os.write(fd, b"1")
            first_step.told = True
        return original(*args, **kwargs)

    first_step.told = False
    loop._train_step = first_step


def _load_failures(paths: list[Path]) -> list[list[str]]:
    """[name, error] for each file that does not load both ways (nothing is writing now)."""
    failures = []
    for path in paths:
        try:
            torch.load(path, map_location="cpu", weights_only=True)
            load_model_weights(fresh_model(), path, "cpu")
        except Exception as error:  # recorded, and the test fails on it
            failures.append([path.name, f"{type(error).__name__}: {error}"])
    return failures


def _one_kill(folder: Path, data: Data, config, index: int, delay: float) -> dict:
    pid, ready = _start(folder, data, config)
    readable, _, _ = select.select([ready], [], [], 30.0)
    started = bool(readable) and os.read(ready, 1) == b"1"
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(ready)
    temporary = sorted(n for n in os.listdir(folder) if is_temporary_file(n))
    scan = scan_checkpoints(folder)
    steps = [info.global_step for info in scan.checkpoints]
    listed = [[i.name, i.global_step, i.val_loss, i.time_order] for i in scan.checkpoints]
    return {
        "kill": index,
        "delay": round(delay, 4),
        "started": started,
        "killed_by_signal": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
        "listed": sorted(listed),
        "skipped": [[path.name, reason] for path, reason in scan.skipped],
        "load_failures": _load_failures([info.path for info in scan.checkpoints]),
        "temporary": temporary,
        "latest_step": max(steps, default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=0.4)
    parser.add_argument("--keep-best", type=int, default=1)
    parser.add_argument("--keep-last", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # no intra-op thread pool in the parent before fork()
    started = time.perf_counter()
    data = load_data()
    config = training_config(keep_best=args.keep_best, keep_last=args.keep_last)
    # Warm up (first autograd pass, first save) here, so that no child pays for it.
    with contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory() as scratch:
        run_training(Path(scratch), data, training_config(epochs=1), resume="none")
    args.folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    for index in range(args.kills):
        record = _one_kill(args.folder, data, config, index, rng.uniform(0.0, args.max_delay))
        print(json.dumps(record), flush=True)
    print(json.dumps({"elapsed_s": round(time.perf_counter() - started, 2)}), flush=True)


if __name__ == "__main__":
    main()
