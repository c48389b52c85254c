#!/usr/bin/env python3
"""Sharded (FSDP, 2 processes) save vs one process's save_checkpoint of the same state, in one run.

    .venv/bin/python benchmarks/bench_sharded_save.py            # GPT-2 small + AdamW (~1.5 GB), ~3 min
    .venv/bin/python benchmarks/bench_sharded_save.py --quick    # the tiny preset, a smoke run

Both sides hold the same state: the model of the preset, AdamW with its moments filled
(one zero-gradient step, as torch.distributed.checkpoint's state_dict helpers initialise it),
the scheduler, the generators and the position. Reported, as ratios measured here:

(a) wall time of one sharded save (``save_sharded_checkpoint``: 2 processes under torchrun on
    the CPU with gloo, each writing its shards, rank 0 committing the folder) / wall time of
    one ``save_checkpoint`` in a single process (target: <= 1.2x);
(b) the bytes each process writes / the bytes of the single file (about 0.5).

Medians of --repeats saves after one warm-up save each; files go to a temporary folder
that is deleted at the end. Run it on an idle machine: other work skews both timings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from utils.model import GPT, config_for_preset  # noqa: E402
from utils.training.optim import build_optimizer, build_scheduler  # noqa: E402
from utils.training.rng import capture_rng_state  # noqa: E402

WHEN = dt.datetime(2025, 11, 22, 6, 54, 55)


def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, step: int) -> dict:
    """The keyword arguments of a save, the same for both sides."""
    return dict(
        epoch=0, global_step=step, metrics={"train_loss": 2.0, "val_loss": 2.1, "learning_rate": 1e-4},
        scheduler=scheduler, history=[], config={"training": {}}, rng_state=capture_rng_state(),
        data_state={"epoch": 0, "batch_in_epoch": step, "batches_per_epoch": 1000, "seed": 1},
        step_losses=torch.zeros(step, dtype=torch.float64), retention=None,
        when=WHEN + dt.timedelta(seconds=step),
    )  # fmt: skip


def _filled_optimizer(model: torch.nn.Module):
    """AdamW with its moments allocated: torch's state_dict helper takes one step with zero gradients, lr 0."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    optimizer = build_optimizer(model, 1e-4, 0.1)
    get_state_dict(model, optimizer)
    return optimizer, build_scheduler(optimizer, 10, 1000)


def _folder_bytes(folder: Path, names: list[str]) -> int:
    return sum((folder / name).stat().st_size for name in names)


def worker(preset: str, workdir: Path, repeats: int) -> None:
    """One rank of the sharded side (run by torchrun); rank 0 prints one JSON line."""
    import torch.distributed as dist

    from utils.training.distributed.setup import start, stop, wrap_model
    from utils.training.distributed.sharded_save import save_sharded_checkpoint
    from utils.training.engine.sharded_folder import RECORD_NAME, TRAIN_STATE_NAME, rank_file_name

    context = start("fsdp", "cpu")
    torch.manual_seed(0)
    model = wrap_model(GPT(config_for_preset(preset)), context)
    optimizer, scheduler = _filled_optimizer(model)
    times, folder = [], None
    for step in range(repeats + 1):  # the first save warms up (imports, DCP's planner caches)
        dist.barrier()
        started = time.perf_counter()
        folder = save_sharded_checkpoint(
            context, workdir, model, optimizer, **_state(model, optimizer, scheduler, step + 1)
        )
        dist.barrier()
        times.append(time.perf_counter() - started)
    own = [f"__{context.rank}_0.distcp", rank_file_name(context.rank)]
    if context.is_main:
        own += [".metadata", TRAIN_STATE_NAME, RECORD_NAME]
    written = context.gather(_folder_bytes(folder, own))
    if context.is_main:
        print(json.dumps({"seconds": statistics.median(times[1:]), "bytes_per_rank": written}), flush=True)
    stop(context)


def single_process(preset: str, workdir: Path, repeats: int) -> dict:
    """The baseline: save_checkpoint of the same state in this one process."""
    from utils.training.engine.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = GPT(config_for_preset(preset))
    optimizer, scheduler = _filled_optimizer(model)
    times, path = [], None
    for step in range(repeats + 1):
        started = time.perf_counter()
        path = save_checkpoint(workdir, model, optimizer, **_state(model, optimizer, scheduler, step + 1))
        times.append(time.perf_counter() - started)
    return {"seconds": statistics.median(times[1:]), "bytes": path.stat().st_size}


def sharded(preset: str, workdir: Path, repeats: int) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
               "--worker", "--preset", preset, "--repeats", str(repeats), "--workdir", str(workdir)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"the sharded side failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the tiny preset (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.preset, args.workdir, args.repeats)
    torch.set_num_threads(1)  # as each torchrun worker (OMP_NUM_THREADS=1): the same work per process
    preset = "tiny" if args.quick else "gpt2"
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_sharded_"))
    try:
        one = single_process(preset, workdir / "single", args.repeats)
        two = sharded(preset, workdir / "sharded", args.repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"Preset {preset}: one file of {one['bytes'] / 1e6:,.1f} MB; medians of {args.repeats} saves")
    print(f"single-process save_checkpoint: {one['seconds']:.2f} s")
    print(f"sharded save, 2 processes:      {two['seconds']:.2f} s")
    print(f"(a) sharded / single-process wall time: {two['seconds'] / one['seconds']:.2f}x (target <= 1.2x)")
    shares = ", ".join(f"rank {r} {b / one['bytes']:.2f}" for r, b in enumerate(two["bytes_per_rank"]))
    print(f"(b) bytes written per process / single file: {shares} (about 0.5 each)")


if __name__ == "__main__":
    main()
