#!/usr/bin/env python3
"""Benchmark: ``layer_changes`` over 20 GPT-2-small checkpoints, ``compare_checkpoints`` of 3.

    .venv/bin/python benchmarks/bench_analysis.py            # 20 files of ~500 MB in /tmp/bench_analysis
    .venv/bin/python benchmarks/bench_analysis.py --quick    # a small model, seconds

The files hold GPT-2 small's weights only (``build_checkpoint`` without optimizer state),
each a little different. When the disk cannot hold all of them, fewer distinct files are
written and the rest are hard links to them (printed; the page cache then holds each once).

Every measurement runs in a fresh process, with every file read once beforehand so that it
is in the page cache:

* read_weights  -- the baseline: each file opened as ``layer_changes`` opens it (memory-mapped
                   through the analysis package's reader) and every weight tensor summed once.
* read_files    -- for reference: the raw bytes of each file read into one buffer.
* layer_changes -- ``layer_changes(files)``, timed (no sampler thread) and, in another process,
                   measured for memory.
* compare       -- ``compare_checkpoints`` of the first 3 files on 4 batches of 128 tokens,
                   sampling 8 tokens from each; memory only.

Private memory: the peak of ``RssAnon`` (``/proc/self/status``, anonymous pages: what the process
allocated) sampled every 2 ms by a thread, minus its value just before the call (which already
holds the user's model), as benchmarks/bench_loading.py measures it. Also printed: the peak of
``Private_Clean + Private_Dirty`` from ``/proc/self/smaps_rollup`` (USS, sampled every 20 ms),
which also counts page-cache pages of mapped files that no other process maps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from proc_memory import smaps_mb, status_mb  # noqa: E402 (benchmarks/ is sys.path[0])

from utils.model import GPT, GPTConfig  # noqa: E402
from utils.training.engine.format import build_checkpoint  # noqa: E402

FULL = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
QUICK = dict(vocab_size=1024, block_size=128, n_layer=2, n_head=2, n_embd=128)
TARGETS = {"changes_extra_mb": 100.0, "changes_time_ratio": 2.0, "compare_extra_over_model_mb": 100.0}
VARIANTS = ("read_weights", "read_files", "layer_changes", "layer_changes_memory", "compare_memory")
_MARGIN = 1 << 30  # free disk left after the files


def build_model(quick: bool) -> GPT:
    return GPT(GPTConfig(**(QUICK if quick else FULL), dropout=0.0, bias=True))


def model_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


# --- the files ----------------------------------------------------------------------------------


def make_files(folder: Path, count: int, quick: bool) -> list[str]:
    """``count`` checkpoint files (weights only); hard links when the disk is short. Returns notes."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(quick)
    size = model_bytes(model) + (1 << 20)
    free = shutil.disk_usage(folder).free
    distinct = max(2, min(count, (free - _MARGIN) // size))
    notes = [f"{distinct} distinct files of {size / 1e6:,.0f} MB"]
    if distinct < count:
        notes.append(f"{count - distinct} hard links to them (disk: {free / 1e9:.1f} GB free)")
    for index in range(count):
        path = folder / f"checkpoint_epoch{index:04d}_step{(index + 1) * 100:06d}_20250101_000000.pt"
        if index < distinct:
            with torch.no_grad():
                for param in model.parameters():
                    param.mul_(1.0 + 1e-3 * (index + 1))  # each file a little different
            checkpoint = build_checkpoint(
                model_state=model.state_dict(), epoch=index, global_step=(index + 1) * 100
            )
            torch.save(checkpoint, path)
        else:
            os.link(folder_files(folder)[index % distinct], path)
    return notes


def folder_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint_*.pt"))


def warm_page_cache(paths: list[Path]) -> float:
    """Read every file once; returns GB/s (low: the files do not fit in the page cache)."""
    start, total = time.perf_counter(), 0
    buffer = bytearray(64 << 20)
    for path in paths:
        with path.open("rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                total += count
    return total / 1e9 / (time.perf_counter() - start)


# --- worker side: one measurement, one fresh process --------------------------------------------


class _PeakSampler(threading.Thread):
    """Peaks of RssAnon (every 2 ms), RssFile and USS (every 20 ms)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.anon, self.file, self.uss = (
            status_mb("RssAnon"),
            status_mb("RssFile"),
            smaps_mb("Private_Clean", "Private_Dirty"),
        )
        self.stop = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self.stop.wait(0.002):
            self.anon = max(self.anon, status_mb("RssAnon"))
            tick += 1
            if tick % 10 == 0:
                self.file = max(self.file, status_mb("RssFile"))
                self.uss = max(self.uss, smaps_mb("Private_Clean", "Private_Dirty"))


def _read_weights(paths: list[Path]) -> None:
    from utils.training.analysis._weights import open_checkpoint_weights

    for path in paths:
        with open_checkpoint_weights(path) as weights:
            for tensor in weights.values():
                float(tensor.sum())


def _read_files(paths: list[Path]) -> None:
    buffer = bytearray(64 << 20)
    for path in paths:
        with path.open("rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def _compare(paths: list[Path], quick: bool) -> dict:
    from utils.training.analysis import compare_checkpoints

    model = build_model(quick).eval()
    generator = torch.Generator().manual_seed(0)
    vocab = (QUICK if quick else FULL)["vocab_size"]
    batches = [(x, torch.roll(x, -1, 1)) for x in torch.randint(vocab, (4, 1, 128), generator=generator)]
    before = status_mb("RssAnon")
    before_uss = smaps_mb("Private_Clean", "Private_Dirty")
    sampler = _PeakSampler()
    sampler.start()
    start = time.perf_counter()
    report = compare_checkpoints(model, paths[:3], batches, prompt=[50, 60, 70], max_new_tokens=8, out=None)
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    return {
        "seconds": seconds,
        "extra_mb": max(sampler.anon, status_mb("RssAnon")) - before,
        "extra_uss_mb": sampler.uss - before_uss,
        "model_mb": model_bytes(model) / 2**20,
        "loads": report.loads,
        "windows": report.windows,
    }


def run_worker(variant: str, folder: Path, quick: bool) -> dict:
    from utils.training.analysis import layer_changes

    paths = folder_files(folder)
    if variant == "compare_memory":
        return _compare(paths, quick)
    measured = variant == "layer_changes_memory"
    before, before_uss = status_mb("RssAnon"), smaps_mb("Private_Clean", "Private_Dirty")
    sampler = _PeakSampler() if measured else None
    if sampler:
        sampler.start()
    start = time.perf_counter()
    if variant == "read_weights":
        _read_weights(paths)
    elif variant == "read_files":
        _read_files(paths)
    else:
        result = layer_changes(paths)
        assert len(result.table) > 0 and all(len(row) == len(paths) for row in result.table.values())
    out = {"seconds": time.perf_counter() - start}
    if sampler:
        sampler.stop.set()
        sampler.join()
        out.update(
            extra_mb=max(sampler.anon, status_mb("RssAnon")) - before,
            extra_uss_mb=sampler.uss - before_uss,
            peak_rss_file_mb=sampler.file,
        )
    return out


# --- parent side --------------------------------------------------------------------------------


def run_one(variant: str, folder: Path, quick: bool) -> dict:
    warm_page_cache(folder_files(folder))
    cmd = [sys.executable, __file__, "--worker", variant, "--folder", str(folder)] + ["--quick"] * quick
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_all(folder: Path, quick: bool, repeats: int) -> dict:
    """Round-robin over the variants, so that a slow spell of the machine hits all of them."""
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            runs[variant].append(run_one(variant, folder, quick))
    return {
        variant: {
            key: (max if key.startswith(("extra", "peak")) else statistics.median)(r[key] for r in rows)
            for key in rows[0]
        }  # fmt: skip
        for variant, rows in runs.items()
    }


def _verdict(ok: bool, quick: bool) -> str:
    return "(targets apply to GPT-2 small only)" if quick else ("PASS" if ok else "FAIL")


def report_results(results: dict, notes: list[str], gbps: float, quick: bool, repeats: int) -> None:
    files = len(folder_files(Path(results["_folder"])))
    print(f"files: {files} checkpoints ({'; '.join(notes)}); page cache warm-up read at {gbps:.1f} GB/s")
    print(f"each measurement: a fresh process, files in the page cache; median of {repeats} (memory: max)")
    for variant in ("read_files", "read_weights", "layer_changes"):
        print(f"{variant:<34}{results[variant]['seconds']:>9.2f} s")
    ratio = results["layer_changes"]["seconds"] / results["read_weights"]["seconds"]
    raw = results["layer_changes"]["seconds"] / results["read_files"]["seconds"]
    print(
        f"time ratio layer_changes / read_weights: {ratio:.2f}x (target <= 2x) {_verdict(ratio <= 2, quick)}"
    )
    print(f"time ratio layer_changes / read_files (raw bytes, for reference): {raw:.2f}x")
    memory = results["layer_changes_memory"]
    print(
        f"layer_changes extra peak private MB (RssAnon): {memory['extra_mb']:.1f} (target <= 100) "
        f"{_verdict(memory['extra_mb'] <= 100, quick)}"
    )
    print(
        "layer_changes extra peak USS MB (Private_*, incl. mapped page cache): "
        f"{memory['extra_uss_mb']:.1f}; "
        f"peak RssFile {memory['peak_rss_file_mb']:.0f} MB"
    )
    compare = results["compare_memory"]
    over = compare["extra_mb"] - compare["model_mb"]
    print(
        f"compare_checkpoints (3 files, {compare['windows']} windows, {compare['loads']} loads): "
        f"{compare['seconds']:.1f} s; extra peak private MB (RssAnon) {compare['extra_mb']:.1f} = one model "
        f"copy {compare['model_mb']:.1f} + {over:.1f} (target <= 100) {_verdict(over <= 100, quick)}"
    )
    uss = compare["extra_uss_mb"]
    print(f"compare_checkpoints extra peak USS MB (Private_*, incl. mapped page cache): {uss:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small model instead of GPT-2 small")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=None, help="where the files go (made when missing)")
    parser.add_argument("--keep", action="store_true", help="keep the files this run wrote")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = args.folder or Path("/tmp/bench_analysis") / ("quick" if args.quick else "gpt2")
    if args.worker:
        torch.set_num_threads(1)  # the same work in every variant, beside other jobs on the machine
        print(json.dumps(run_worker(args.worker, folder, args.quick)))
        return 0
    created = not folder_files(folder)
    if created:
        print(f"writing {args.files} checkpoints to {folder} ...", flush=True)
        notes = make_files(folder, args.files, args.quick)
    else:
        notes = [f"{len(folder_files(folder))} existing files"]
    try:
        gbps = warm_page_cache(folder_files(folder))
        results = measure_all(folder, args.quick, args.repeats)
        results["_folder"] = str(folder)
        report_results(results, notes, gbps, args.quick, args.repeats)
    finally:
        if created and not args.keep:
            shutil.rmtree(folder)  # 10 GB should not outlive the run
    return 0


if __name__ == "__main__":
    sys.exit(main())
