#!/usr/bin/env python3
"""Benchmark: loading GPT-2 small weights from a checkpoint that also holds AdamW state.

    .venv/bin/python benchmarks/bench_loading.py            # GPT-2 small, ~1.5 GB file in /tmp
    .venv/bin/python benchmarks/bench_loading.py --quick    # a small model, seconds

Variants, each run in a fresh process (so peak memory is its own), the file
already in the page cache, the median of several runs:

* design      -- the approved design's code: ``torch.load(weights_only=False)`` + ``load_state_dict``.
* ours        -- ``load_model_weights(..., verify=False)`` and ``verify=True``.
* floor       -- the least any loader can do: ``torch.load(mmap=True)`` + copying the weights
                 into the model; its copy alone is printed too.
* cell34      -- the whole of Cell 34 (``load_weights_cell``: listing, selection, CRC-32 check of
                 the weights, load with verification, panels) against ``load_model_weights(verify=False)`` in the same
                 process: the difference is what the cell adds around the load.

Peak private memory is the largest ``RssAnon`` (``/proc/self/status``) seen
while the variant runs (sampled every millisecond, plus once at the end),
minus ``RssAnon`` just before it (which already holds the model). Pages of the
memory-mapped file are page cache, not private memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from proc_memory import AnonPeakSampler, status_mb  # noqa: E402 (benchmarks/ is sys.path[0])
from torch import nn  # noqa: E402

from utils.notebook.panels import render_load_report  # noqa: E402
from utils.training.engine.format import build_checkpoint  # noqa: E402
from utils.training.engine.loading import load_model_weights  # noqa: E402

VARIANTS = ("design", "ours_noverify", "ours_verify", "floor", "cell34")
FULL = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
QUICK = dict(vocab_size=1024, block_size=128, n_layer=2, n_head=2, n_embd=128)
TARGETS = {"speedup": 5.0, "floor_ratio": 3.0, "extra_mb": 100.0}


class _Block(nn.Module):
    """The parameter layout of a nanoGPT block (used when utils.model.gpt is not importable)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.mlp = nn.Module(), nn.Module()
        self.attn.c_attn, self.attn.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp.c_fc, self.mlp.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)


class _ShapeTwin(nn.Module):
    """Same names and shapes as GPT-2 (lm_head tied to wte): 124,439,808 parameters."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=nn.Embedding(block_size, n_embd),
                h=nn.ModuleList(_Block(n_embd) for _ in range(n_layer)),
                ln_f=nn.LayerNorm(n_embd),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight


def build_model(quick: bool) -> nn.Module:
    """The project's GPT when it is importable, else a module of identical shapes."""
    shape = QUICK if quick else FULL
    try:
        from utils.model.gpt import GPT, GPTConfig
    except ImportError:
        return _ShapeTwin(**shape)
    return GPT(GPTConfig(**shape, dropout=0.0, bias=True))


def make_checkpoint(path: Path, quick: bool) -> None:
    """Save weights + AdamW state (one step taken, so exp_avg/exp_avg_sq exist)."""
    model = build_model(quick)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    checkpoint = build_checkpoint(
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        epoch=9,
        global_step=9,
        metrics=dict(train_loss=3.1, val_loss=3.2, learning_rate=5e-5),
    )
    torch.save(checkpoint, path)


# --- worker side: one variant, one fresh process --------------------------------------------


def _floor(model: nn.Module, path: str) -> float:
    """mmap load + copy of each distinct tensor; returns the seconds the copy alone took."""
    weights = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["model_state_dict"]
    start, seen = time.perf_counter(), set()
    with torch.no_grad():
        for name, target in model.state_dict().items():
            if target.data_ptr() not in seen:
                seen.add(target.data_ptr())
                target.copy_(weights[name])
    return time.perf_counter() - start


def _design(model: nn.Module, path: str) -> None:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    model.to(torch.device("cpu"))
    model.eval()


def _cell34_rest(model: nn.Module, path: str) -> float:
    """Seconds the whole Cell 34 takes beyond ``load_model_weights(verify=False)``."""
    from utils.notebook.load_weights import load_weights_cell

    load_model_weights(model, path, device="cpu", verify=False)  # first call: one-time costs
    start = time.perf_counter()
    load_model_weights(model, path, device="cpu", verify=False)
    load_s = time.perf_counter() - start
    namespace = {"model": model, "CHECKPOINT_DIR": str(Path(path).parent)}
    start = time.perf_counter()
    report = load_weights_cell(namespace, manual_path=path, device="cpu", out=lambda text: None)
    cell_s = time.perf_counter() - start
    assert report is not None and report.verified
    return cell_s - load_s


def run_worker(variant: str, path: str, quick: bool) -> dict:
    model = build_model(quick)
    before = status_mb("RssAnon")
    sampler = AnonPeakSampler()
    sampler.start()
    result: dict = {}
    start = time.perf_counter()
    if variant == "design":
        _design(model, path)
    elif variant == "floor":
        result["copy_s"] = _floor(model, path)
    elif variant == "cell34":
        result["rest_s"] = _cell34_rest(model, path)
    else:
        report = load_model_weights(model, path, device="cpu", verify=variant == "ours_verify")
    result["seconds"] = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    result["extra_mb"] = max(sampler.peak, status_mb("RssAnon")) - before
    if variant == "ours_verify":
        assert report.verified, report.warnings
        start = time.perf_counter()
        render_load_report(report)
        result["render_s"] = time.perf_counter() - start
    return result


# --- parent side --------------------------------------------------------------------------


def warm_page_cache(path: Path) -> None:
    """Read the whole file, so that every variant starts with it in the page cache."""
    with path.open("rb") as handle:
        while handle.read(64 << 20):
            pass


def run_one(variant: str, path: Path, quick: bool) -> dict:
    warm_page_cache(path)
    cmd = [sys.executable, __file__, "--worker", variant, "--file", str(path)] + ["--quick"] * quick
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_all(path: Path, quick: bool, repeats: int) -> dict:
    """Round-robin over the variants, so that a slow spell of the machine hits all of them."""
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            runs[variant].append(run_one(variant, path, quick))
    results = {}
    for variant, rows in runs.items():
        summary = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        summary["extra_mb_max"] = max(row["extra_mb"] for row in rows)
        summary["min_s"] = min(row["seconds"] for row in rows)
        results[variant] = summary
    return results


def _verdict(ok: bool, quick: bool) -> str:
    if quick:
        return "(targets apply to GPT-2 small only)"
    return "PASS" if ok else "FAIL"


def report_results(results: dict, params: int, file_mb: float, repeats: int, quick: bool) -> None:
    print(f"model: {params:,} parameters; checkpoint file: {file_mb:,.0f} MB (weights + AdamW state)")
    print(f"each variant: {repeats} fresh processes, file in the page cache, median seconds")
    print(f"{'variant':<34}{'median_s':>10}{'min_s':>10}{'extra_peak_private_MB':>24}")
    labels = {
        "design": "design (weights_only=False)",
        "ours_noverify": "load_model_weights(verify=False)",
        "ours_verify": "load_model_weights(verify=True)",
        "floor": "floor (mmap load + copy)",
    }
    for variant, label in labels.items():
        r = results[variant]
        print(f"{label:<34}{r['seconds']:>10.4f}{r['min_s']:>10.4f}{r['extra_mb_max']:>24.1f}")
    print(f"{'floor: copy alone':<34}{results['floor']['copy_s']:>10.4f}")
    design, floor = results["design"]["seconds"], results["floor"]["seconds"]
    for variant in ("ours_noverify", "ours_verify"):
        r = results[variant]
        speedup, ratio = design / r["seconds"], r["seconds"] / floor
        print(f"speedup vs design [{variant}]: {speedup:.1f}x (target >= 5x) {_verdict(speedup >= 5, quick)}")
        print(f"ratio vs floor [{variant}]: {ratio:.2f}x (target <= 3x) {_verdict(ratio <= 3, quick)}")
        print(
            f"extra peak private MB [{variant}]: {r['extra_mb_max']:.1f} (target <= 100) "
            f"{_verdict(r['extra_mb_max'] <= 100, quick)}"
        )
    best = {variant: results[variant]["min_s"] for variant in VARIANTS}
    for variant in ("ours_noverify", "ours_verify"):
        print(
            f"best-of-{repeats} [{variant}]: speedup vs design {best['design'] / best[variant]:.1f}x, "
            f"ratio vs floor {best[variant] / best['floor']:.2f}x"
        )
    print(f"extra peak private MB [design]: {results['design']['extra_mb_max']:.1f}")
    print(f"render panels: {results['ours_verify']['render_s'] * 1000:.2f} ms")
    rest = results["cell34"]["rest_s"]
    print(
        f"rest of Cell 34 (listing, selection, checksums, verification, panels): {rest:.3f} s "
        f"(target < 0.5 s) {_verdict(rest < 0.5, quick)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small model instead of GPT-2 small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--file", type=Path, default=None, help="checkpoint path (made when missing)")
    parser.add_argument("--keep", action="store_true", help="keep a checkpoint file this run wrote")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, str(args.file), args.quick)))
        return 0
    # A folder of its own: Cell 34's variant lists the file's folder.
    path = args.file or Path("/tmp/bench_loading") / f"bench_loading_{'quick' if args.quick else 'gpt2'}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    if created:
        print(f"writing {path} ...", flush=True)
        make_checkpoint(path, args.quick)
    try:
        results = measure_all(path, args.quick, args.repeats)
        params = sum(p.numel() for p in build_model(args.quick).parameters())
        report_results(results, params, path.stat().st_size / 1e6, args.repeats, args.quick)
    finally:
        if created and not args.keep:
            path.unlink()  # a 1.5 GB file should not outlive the run
    return 0


if __name__ == "__main__":
    sys.exit(main())
