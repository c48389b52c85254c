#!/usr/bin/env python3
"""Background saves and the mirror: what training waits for, and what it costs in throughput.

    .venv/bin/python benchmarks/bench_async_save.py            # GPT-2 small + AdamW on the CPU, ~10 min
    .venv/bin/python benchmarks/bench_async_save.py --quick    # a tiny model, a smoke run

Every figure is a ratio of two measurements taken in the same run, on the same machine:

(a) the time one ``save_checkpoint(..., blocking=False)`` blocks the training loop (the copy of
    the state to host memory) against one synchronous ``save_checkpoint`` of the same state
    (write, fsync, rename, retention). Target: <= 0.1x.
(b) training throughput with a background save every N steps against no saves at all (measured
    just before, so that a change of load on a shared machine hits both), for growing N; the
    smallest N at which the background writer keeps up (no save waits for the previous one) is
    printed, with its ratio. Target: >= 0.95.
(c) throughput with a mirror throttled to 50 MB/s (a simulated Drive: the injected copy function
    sleeps to hold that rate) against the same saves without a mirror, alternating. Target: >= 0.95.

The loop is train()'s step (forward, backward, clip, AdamW, zero_grad) on one fixed batch, so
that data loading and evaluation add nothing to either side. Files go to a temporary folder
(deleted at the end), retention keeps the newest file only.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import utils.training.engine.checkpoint as checkpoint_module  # noqa: E402
import utils.training.engine.mirror as mirror_module  # noqa: E402
from utils.model import GPT, config_for_preset  # noqa: E402
from utils.training.engine.async_save import BACKGROUND_NICE, BackgroundWriter  # noqa: E402
from utils.training.engine.checkpoint import save_checkpoint  # noqa: E402
from utils.training.engine.mirror import Mirror  # noqa: E402
from utils.training.engine.retention import RetentionPolicy  # noqa: E402
from utils.training.optim import build_optimizer  # noqa: E402

KEEP_NEWEST = RetentionPolicy(keep_best=0, keep_last=1)
MIRROR_RATE = 50e6  # bytes per second


@dataclass
class Timed:
    """One measured training stretch."""

    steps_per_s: float
    saves: int = 0
    blocked_s: list[float] | None = None  # per save: how long save_checkpoint held the loop
    cpu_per_step: float = 0.0  # process CPU seconds per step, every thread
    waits: int = 0  # saves that found the previous one still being written
    waited_s: float = 0.0  # how long they waited for it
    mirror: str = ""


def throttled_copy(rate: float):
    """A mirror copy that holds ``rate`` bytes/s, as a slow Drive would (CRC-32 as the real one)."""

    def copy(source, target, buffer) -> int:
        view, crc, done, started = memoryview(buffer), 0, 0, time.perf_counter()
        while count := source.readinto(view):
            crc = zlib.crc32(view[:count], crc)
            target.write(view[:count])
            done += count
            ahead = done / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        return crc

    return copy


class Trainer:
    """GPT + AdamW on one fixed batch: train()'s step without data loading."""

    def __init__(self, preset: str, batch: int, tokens: int) -> None:
        torch.manual_seed(0)
        self.model = GPT(config_for_preset(preset))
        self.optimizer = build_optimizer(self.model, 6e-4, 0.1)
        vocab = self.model.config.vocab_size
        self.x = torch.randint(vocab, (batch, tokens))
        self.y = torch.roll(self.x, -1, dims=1)
        self.step_count = 0

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        _, loss = self.model(self.x, self.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step_count += 1

    def save(self, folder: Path, **kwargs):
        return save_checkpoint(
            folder, self.model, self.optimizer, epoch=0, global_step=self.step_count, retention=KEEP_NEWEST,
            metrics={"train_loss": 3.0, "val_loss": 3.1, "learning_rate": 6e-4}, **kwargs,
        )  # fmt: skip


def train_stretch(trainer: Trainer, steps: int, every: int = 0, save=None) -> Timed:
    """Time ``steps`` steps, calling ``save()`` after every ``every``-th (0: never)."""
    blocked, started, cpu = [], time.perf_counter(), time.process_time()
    for index in range(1, steps + 1):
        trainer.step()
        if every and index % every == 0:
            begin = time.perf_counter()
            save()
            blocked.append(time.perf_counter() - begin)
    timed = Timed(steps / (time.perf_counter() - started), len(blocked), blocked)
    timed.cpu_per_step = (time.process_time() - cpu) / steps
    return timed


class ThreadCpu:
    """CPU seconds (user + system) the background threads spend per file: the engine's writer and copier
    are wrapped for the benchmark, and each call's ``time.thread_time()`` is recorded."""

    def __init__(self) -> None:
        self.write: list[float] = []
        self.copy: list[float] = []
        for module, name, log in ((checkpoint_module, "write_checkpoint_file", self.write),
                                  (mirror_module, "mirror_copy", self.copy)):  # fmt: skip
            setattr(module, name, self._timed(getattr(module, name), log))

    @staticmethod
    def _timed(function, log: list[float]):
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                log.append(time.thread_time() - started)

        return timed


def measure_blocking(trainer: Trainer, folder: Path, repeats: int) -> tuple[float, float, float]:
    """(first async block, median async block, median synchronous save), interleaved."""
    writer, synchronous, asynchronous = BackgroundWriter(nice=0), [], []
    for _ in range(repeats + 1):
        trainer.step()
        writer.wait()  # measure the copy alone: the previous background save is done
        begin = time.perf_counter()
        trainer.save(folder / "async", blocking=False, writer=writer)
        asynchronous.append(time.perf_counter() - begin)
        writer.wait()
        begin = time.perf_counter()
        trainer.save(folder / "sync")
        synchronous.append(time.perf_counter() - begin)
    writer.release()
    return asynchronous[0], statistics.median(asynchronous[1:]), statistics.median(synchronous[1:])


def async_stretch(
    trainer: Trainer, folder: Path, steps: int, every: int, nice: int, mirror: Mirror | None = None
) -> Timed:
    """Background saves every ``every`` steps (optionally mirrored); waits for the writer at the end."""
    writer = BackgroundWriter(on_saved=mirror.enqueue if mirror else None, nice=nice)
    waits = []

    def save():
        busy = writer.pending is not None  # the previous save is still being written
        trainer.save(folder, blocking=False, writer=writer)
        if busy:
            waits.append(writer.last_wait_s)

    timed = train_stretch(trainer, steps, every, save)
    writer.release()
    timed.waits, timed.waited_s = len(waits), sum(waits)
    if mirror is not None:
        status = mirror.status()
        timed.mirror = f"{len(status.copied)} copied, {status.behind} behind, {len(status.skipped)} skipped"
    return timed


def measure_every(args: argparse.Namespace, trainer: Trainer, workdir: Path, cpu: ThreadCpu) -> int:
    """(b): for each N, no saves and a background save every N steps, back to back.

    Returns:
        The first N at which the writer keeps up (else the last N tried), for (c).
    """
    keeps_up, within = None, None
    for every in args.every:
        steps = max(args.steps, args.saves * every)
        base = train_stretch(trainer, steps)
        timed = async_stretch(trainer, workdir / f"every{every}", steps, every, args.nice)
        shutil.rmtree(workdir / f"every{every}", ignore_errors=True)
        ratio, kept = timed.steps_per_s / base.steps_per_s, timed.waits == 0
        print(f"save every {every} step(s): {timed.steps_per_s:.4f} steps/s vs {base.steps_per_s:.4f} without saves "
              f"(just before) = {ratio:.3f}x; {timed.saves} saves, loop blocked {statistics.median(timed.blocked_s):.3f} s "
              f"per save (median); {timed.waits} save(s) waited for the writer ({timed.waited_s:.1f} s): "
              f"{'keeps up' if kept else 'falls behind'}", flush=True)  # fmt: skip
        if kept and keeps_up is None:
            keeps_up = (every, ratio)
        if kept and ratio >= 0.95 and within is None:
            within = every
    write_cpu, step_cpu = statistics.median(cpu.write), base.cpu_per_step
    print(f"    CPU: a training step {step_cpu:.2f} s (all threads), a background write {write_cpu:.2f} s (its thread): "
          f"where training keeps every core busy, a save every N steps costs about {write_cpu / step_cpu:.2f}/N of "
          f"the throughput, so N >= {math.ceil(write_cpu / step_cpu / 0.05)} for 5%")  # fmt: skip
    if keeps_up is None:
        print(f"(b) the background writer never kept up at the N tried; (c) uses N = {args.every[-1]}")
        return args.every[-1]
    print(f"(b) smallest N at which the writer keeps up: {keeps_up[0]}; throughput = {keeps_up[1]:.3f}x of no saves "
          f"(target >= 0.95); smallest N within 5%: {within if within else 'none of ' + str(args.every)}")  # fmt: skip
    return keeps_up[0]


def measure_mirror(
    args: argparse.Namespace,
    trainer: Trainer,
    workdir: Path,
    every: int,
    cpu: ThreadCpu,
    checkpoint_bytes: int,
) -> None:
    """(c): the same background saves with and without a throttled mirror, alternating."""
    steps, plain, mirrored, mirror = max(args.steps, args.saves * every), [], [], None
    for _ in range(args.pairs):
        plain.append(async_stretch(trainer, workdir / "plain", steps, every, args.nice))
        mirror = Mirror(workdir / "mirror", KEEP_NEWEST, copy=throttled_copy(MIRROR_RATE), nice=args.nice)
        mirrored.append(async_stretch(trainer, workdir / "mirrored", steps, every, args.nice, mirror))
        started = time.perf_counter()
        mirror.wait()  # the next pair starts with an idle mirror
        tail = time.perf_counter() - started
        print(f"save every {every}: no mirror {plain[-1].steps_per_s:.4f} steps/s; mirror at {MIRROR_RATE / 1e6:.0f} MB/s "
              f"{mirrored[-1].steps_per_s:.4f} steps/s (at the end: {mirrored[-1].mirror}; queue done "
              f"{tail:.1f} s later)", flush=True)  # fmt: skip
    ratio = statistics.mean(m.steps_per_s for m in mirrored) / statistics.mean(p.steps_per_s for p in plain)
    print(
        f"(c) throughput with the mirror / without = {ratio:.3f}x (target >= 0.95; mean of {args.pairs} pairs)"
    )
    if cpu.copy:
        copy_cpu, copy_s = statistics.median(cpu.copy), checkpoint_bytes / MIRROR_RATE
        print(f"    CPU: one mirror copy {copy_cpu:.2f} s (its thread: copy, CRC-32, read-back) spread over the "
              f"~{copy_s:.0f} s it takes at {MIRROR_RATE / 1e6:.0f} MB/s: where training keeps all {args.threads} "
              f"cores busy, about {copy_cpu / copy_s / args.threads:.3f} of the throughput")  # fmt: skip


def run(args: argparse.Namespace, workdir: Path) -> None:
    torch.set_num_threads(args.threads)
    trainer = Trainer(args.preset, args.batch, args.tokens)
    params = sum(p.numel() for p in trainer.model.parameters())
    print(f"Working in {workdir} (torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} torch threads, "
          f"background threads at nice +{args.nice}, load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"Model: {args.preset}, {params:,} parameters; batch {args.batch} x {args.tokens} tokens; AdamW")
    for _ in range(args.warmup):
        trainer.step()
    first, blocked, synchronous = measure_blocking(trainer, workdir / "blocking", args.repeats)
    size = max((workdir / "blocking" / "sync").glob("*.pt"), key=os.path.getmtime).stat().st_size
    print(f"checkpoint file: {size / 1e9:.3f} GB")
    print(f"synchronous save_checkpoint: {synchronous:.3f} s; background save blocks the loop for {blocked:.3f} s "
          f"(first one, buffers allocated: {first:.3f} s); medians of {args.repeats}")  # fmt: skip
    print(
        f"(a) blocked by a background save / synchronous save = {blocked / synchronous:.3f}x (target <= 0.1)"
    )
    shutil.rmtree(workdir / "blocking")
    cpu = ThreadCpu()
    measure_mirror(args, trainer, workdir, measure_every(args, trainer, workdir, cpu), cpu, size)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the tiny preset, few steps: a smoke run")
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for training")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="saves timed for (a)")
    parser.add_argument("--steps", type=int, default=12, help="steps per throughput measurement (at least)")
    parser.add_argument("--saves", type=int, default=4, help="saves per throughput measurement (at least)")
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--pairs", type=int, default=2, help="with/without-mirror pairs for (c)")
    parser.add_argument(
        "--nice", type=int, default=BACKGROUND_NICE, help="priority drop of the background threads"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.tokens, args.steps, args.saves, args.every = "tiny", 32, 6, 2, [1, 2]
        args.pairs, args.repeats, args.warmup = 1, 2, 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-async-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
