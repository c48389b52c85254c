#!/usr/bin/env python3
"""Checkpoint engine benchmark: listing vs torch.load, listing vs model size, atomic vs plain save.

    .venv/bin/python benchmarks/bench_checkpoints.py            # GPT-2 small (~1.5 GB files), ~3 min
    .venv/bin/python benchmarks/bench_checkpoints.py --quick    # tiny sizes, a smoke run

Every figure is a ratio of two timings taken in the same run on the same machine:

(a) listing 20 checkpoints with list_checkpoints vs torch.load of each. torch.load is
    timed on --load-samples files and extrapolated per file (a full load of 20 files
    would add minutes and tell nothing new).
(b) per-checkpoint listing cost for a model with 10x the parameters. The model grows
    in depth (more layers, same width): that multiplies the number of tensors, the
    worst case for a reader, since width growth leaves the tensor count unchanged.
(c) save_checkpoint (temporary file, JSON record, fsync, rename, folder fsync) vs
    torch.save + fsync of the same dict.

Files are written once and hard-linked under 20 names: the listing cost is per file
and the page cache is hot either way. Everything lives in a temporary folder on /tmp
that is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from utils.training.engine.checkpoint import save_checkpoint  # noqa: E402
from utils.training.engine.metadata import read_checkpoint_metadata  # noqa: E402
from utils.training.engine.naming import checkpoint_filename  # noqa: E402
from utils.training.engine.recovery import list_checkpoints  # noqa: E402

GPT2_SMALL = {"vocab": 50257, "block": 1024, "n_layer": 12, "n_embd": 768}
QUICK = {"vocab": 512, "block": 64, "n_layer": 2, "n_embd": 64}
WHEN = dt.datetime(2025, 11, 22, 6, 54, 55)


def gpt_state(vocab: int, block: int, n_layer: int, n_embd: int, fill: bool) -> OrderedDict:
    """A nanoGPT-named state_dict (lm_head tied to wte). ``fill=False`` leaves memory untouched."""
    make = (lambda *shape: torch.randn(*shape)) if fill else (lambda *shape: torch.empty(*shape))
    state = OrderedDict(
        [("transformer.wte.weight", make(vocab, n_embd)), ("transformer.wpe.weight", make(block, n_embd))]
    )
    for i in range(n_layer):
        prefix = f"transformer.h.{i}."
        for name, shape in (
            ("ln_1.weight", (n_embd,)), ("ln_1.bias", (n_embd,)),
            ("attn.c_attn.weight", (3 * n_embd, n_embd)), ("attn.c_attn.bias", (3 * n_embd,)),
            ("attn.c_proj.weight", (n_embd, n_embd)), ("attn.c_proj.bias", (n_embd,)),
            ("ln_2.weight", (n_embd,)), ("ln_2.bias", (n_embd,)),
            ("mlp.c_fc.weight", (4 * n_embd, n_embd)), ("mlp.c_fc.bias", (4 * n_embd,)),
            ("mlp.c_proj.weight", (n_embd, 4 * n_embd)), ("mlp.c_proj.bias", (n_embd,)),
        ):  # fmt: skip
            state[prefix + name] = make(*shape)
    state["transformer.ln_f.weight"] = make(n_embd)
    state["transformer.ln_f.bias"] = make(n_embd)
    state["lm_head.weight"] = state["transformer.wte.weight"]  # tied, stored once
    return state


def parameter_count(state: OrderedDict) -> int:
    return sum(t.numel() for name, t in state.items() if name != "lm_head.weight")


def adamw_state(state: OrderedDict, fill: bool) -> dict:
    """An AdamW-like optimizer state_dict: step, exp_avg, exp_avg_sq per parameter."""
    params = [t for name, t in state.items() if name != "lm_head.weight"]
    like = (lambda t: torch.randn_like(t)) if fill else (lambda t: torch.empty_like(t))
    return {
        "state": {
            i: {"step": torch.tensor(100.0), "exp_avg": like(t), "exp_avg_sq": like(t).abs()}
            for i, t in enumerate(params)
        },
        "param_groups": [
            {"lr": 6e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1, "amsgrad": False,
             "foreach": None, "maximize": False, "capturable": False, "differentiable": False,
             "fused": None, "params": list(range(len(params)))}
        ],
    }  # fmt: skip


def layers_for_10x(size: dict) -> int:
    """Depth that gives ~10x the parameters at the same width."""
    e, v, b = size["n_embd"], size["vocab"], size["block"]
    embeddings = (v + b) * e + 2 * e
    per_layer = 12 * e * e + 13 * e
    return round((10 * (embeddings + per_layer * size["n_layer"]) - embeddings) / per_layer)


def save_linked(folder: Path, state: OrderedDict, optimizer: dict, files: int) -> list[Path]:
    """One real checkpoint (save_checkpoint), hard-linked under ``files`` checkpoint names."""
    first = save_checkpoint(
        folder, state, optimizer, epoch=0, global_step=0, retention=None, when=WHEN,
        metrics={"train_loss": 3.2, "val_loss": 3.3, "learning_rate": 6e-4},
        config={"model": {"n_layer": len([k for k in state if k.endswith("ln_1.weight")])}},
    )  # fmt: skip
    paths = [first]
    for i in range(1, files):
        link = folder / checkpoint_filename(i, i * 1000, WHEN + dt.timedelta(seconds=i))
        os.link(first, link)
        paths.append(link)
    return paths


def time_listing(folder: Path, repeats: int) -> float:
    list_checkpoints(folder, on_skip=None)  # warm-up: page cache and imports
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        listed = list_checkpoints(folder, on_skip=None)
        samples.append(time.perf_counter() - start)
    assert listed and all(info.source == "record" for info in listed), "fast path not taken"
    return statistics.median(samples)


def time_loads(paths: list[Path]) -> float:
    samples = []
    for path in paths:
        start = time.perf_counter()
        obj = torch.load(path, map_location="cpu", weights_only=True)
        samples.append(time.perf_counter() - start)
        del obj
    return statistics.mean(samples)


def plain_save(obj: dict, path: Path) -> None:
    torch.save(obj, path)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def compare_saves(folder: Path, state: OrderedDict, optimizer: dict, repeats: int) -> tuple[float, float]:
    """Median seconds of (save_checkpoint, torch.save + fsync), interleaved to share disk conditions."""
    from utils.training.engine.format import build_checkpoint

    checkpoint = build_checkpoint(model_state=state, optimizer_state=optimizer, epoch=0, global_step=0)
    folder.mkdir(parents=True, exist_ok=True)
    atomic, plain = [], []
    for i in range(repeats):
        target = folder / "plain.pt"
        start = time.perf_counter()
        plain_save(checkpoint, target)
        plain.append(time.perf_counter() - start)
        target.unlink()
        start = time.perf_counter()
        path = save_checkpoint(folder, state, optimizer, epoch=i, global_step=i, metrics={}, retention=None)
        atomic.append(time.perf_counter() - start)
        path.unlink()
    return statistics.median(atomic), statistics.median(plain)


def run(size: dict, files: int, load_samples: int, repeats: int, save_repeats: int, workdir: Path) -> None:
    print(f"Working in {workdir} (torch {torch.__version__}, {os.cpu_count()} CPUs)")
    small_dir, big_dir, save_dir = workdir / "small", workdir / "big", workdir / "save"
    state = gpt_state(**size, fill=True)
    optimizer = adamw_state(state, fill=True)
    paths = save_linked(small_dir, state, optimizer, files)
    print(f"GPT-2-shaped model: {parameter_count(state):,} parameters, {len(state)} state_dict tensors, "
          f"file {paths[0].stat().st_size / 1e9:.3f} GB with AdamW state")  # fmt: skip

    list_small = time_listing(small_dir, repeats)
    load_each = time_loads(paths[:load_samples])
    print(f"list_checkpoints of {files} files: {list_small * 1e3:.1f} ms (median of {repeats}, warm)")
    print(f"torch.load per file: {load_each:.3f} s (mean of {load_samples} files, extrapolated x{files})")
    print(
        f"(a) listing ratio: torch.load x{files} / list_checkpoints = {load_each * files / list_small:,.0f}x"
    )

    atomic, plain = compare_saves(save_dir, state, optimizer, save_repeats)
    del state, optimizer
    print(f"save_checkpoint: {atomic:.3f} s; torch.save + fsync: {plain:.3f} s (median of {save_repeats})")
    print(f"(c) atomic save / torch.save+fsync = {atomic / plain:.3f}x")

    big_size = dict(size, n_layer=layers_for_10x(size))
    big_state = gpt_state(**big_size, fill=False)  # never written: no memory touched
    small_params = parameter_count(gpt_state(**size, fill=False))
    big_paths = save_linked(big_dir, big_state, adamw_state(big_state, fill=False), files)
    print(f"10x model (depth {size['n_layer']} -> {big_size['n_layer']} layers, same width): "
          f"{parameter_count(big_state):,} parameters ({parameter_count(big_state) / small_params:.2f}x), "
          f"{len(big_state)} state_dict tensors, file {big_paths[0].stat().st_size / 1e9:.2f} GB")  # fmt: skip
    del big_state
    list_big = time_listing(big_dir, repeats)
    print(f"list_checkpoints of {files} files: {list_big * 1e3:.1f} ms (median of {repeats}, warm)")
    print(f"(b) per-checkpoint listing cost, 10x model / GPT-2 small = {list_big / list_small:.2f}x")
    meta = read_checkpoint_metadata(big_paths[0])
    print(f"    metadata source for the 10x file: {meta.source} (tensor_count {meta.tensor_count})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--load-samples", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="listing repetitions (median)")
    parser.add_argument("--save-repeats", type=int, default=3, help="save repetitions (median)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new folder under /tmp")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_checkpoints_", dir="/tmp"))
    try:
        run(QUICK if args.quick else GPT2_SMALL, args.files, args.load_samples, args.repeats,
            args.save_repeats, workdir)  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
