#!/usr/bin/env python3
"""load_model_weights on a CUDA machine: checks and timings (not a pytest test: CI has no GPU).

    python3 benchmarks/gpu_loading_check.py [--quick]

Checks, each printed as one ``ok``/``FAIL`` line: the default device is CUDA, a CPU model ends on
``cuda:0``, a model already on the GPU loads float16 weights with conversion, a mismatch leaves a GPU
model unchanged, NaN is found on the GPU, and verification passes across devices. Then times
GPT-2 small into a CUDA model: the design's code (``torch.load(weights_only=False)``,
``load_state_dict``, ``.to('cuda')``) against ``load_model_weights``, and the GPU memory each peaks at.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.bench_loading import build_model, make_checkpoint  # noqa: E402
from utils.model.gpt import GPT, config_for_preset  # noqa: E402
from utils.training.engine.errors import ArchitectureMismatchError  # noqa: E402
from utils.training.engine.format import build_checkpoint  # noqa: E402
from utils.training.engine.loading import load_model_weights  # noqa: E402


def _tiny(seed: int, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(config_for_preset("tiny", dropout=0.0, **overrides))


def _save(path: Path, state: dict) -> Path:
    torch.save(build_checkpoint(model_state=state, epoch=1, global_step=2), path)
    return path


def _same(model: torch.nn.Module, state: dict) -> bool:
    return all(torch.equal(t.cpu(), state[n].to(t.dtype)) for n, t in model.state_dict().items())


def checks(folder: Path) -> list[tuple[str, bool]]:
    source = _tiny(1)
    state = source.state_dict()
    path = _save(folder / "tiny.pt", state)
    results = []
    model = _tiny(2)
    report = load_model_weights(model, path)  # default device
    results.append(
        ("default device is cuda:0, weights exact", report.device == "cuda:0" and _same(model, state))
    )
    results.append(("verified across devices", report.verified is True))
    half = {n: t.half() for n, t in state.items()}
    model = _tiny(3).cuda()
    report = load_model_weights(model, _save(folder / "half.pt", half))
    ok = report.verified and report.dtype_conversions and _same(model, half)
    results.append(("float16 file into a CUDA float32 model", bool(ok)))
    model = _tiny(4, n_layer=3).cuda()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    try:
        load_model_weights(model, path)
        unchanged = False
    except ArchitectureMismatchError:
        unchanged = all(torch.equal(t, before[n]) for n, t in model.state_dict().items())
    results.append(("mismatch leaves a CUDA model unchanged", unchanged))
    bad = {n: t.clone() for n, t in state.items()}
    bad["transformer.ln_f.bias"][0] = math.nan
    report = load_model_weights(_tiny(5).cuda(), _save(folder / "nan.pt", bad))
    results.append(("NaN found on the GPU", report.nonfinite_tensors == ["transformer.ln_f.bias"]))
    return results


def _design(model: torch.nn.Module, path: Path) -> None:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    model.to(torch.device("cuda"))
    model.eval()


def timings(folder: Path, quick: bool, repeats: int) -> None:
    path = folder / "bench.pt"
    make_checkpoint(path, quick)
    variants = {
        "design (weights_only=False) -> cuda": lambda m: _design(m, path),
        "load_model_weights -> cuda, verify=False": lambda m: load_model_weights(
            m, path, "cuda", verify=False
        ),
        "load_model_weights -> cuda, verify=True": lambda m: load_model_weights(m, path, "cuda", verify=True),
    }
    for label, run in variants.items():
        seconds, peaks = [], []
        for _ in range(repeats):
            # A CPU model that the load moves to the GPU. In a GPU notebook Cell 13 has already put
            # the model there; that path (file pages straight into GPU tensors) is not timed here.
            model = build_model(quick)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            run(model)
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
            peaks.append(torch.cuda.max_memory_allocated() / 2**20)
            del model
            torch.cuda.empty_cache()
        print(f"{label:<44} median {statistics.median(seconds):.4f} s  peak GPU {max(peaks):,.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    with tempfile.TemporaryDirectory() as tmp:
        results = checks(Path(tmp))
        for name, ok in results:
            print(f"{'ok  ' if ok else 'FAIL'} {name}")
        timings(Path(tmp), args.quick, args.repeats)
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
