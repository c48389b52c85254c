#!/usr/bin/env python3
"""Benchmark: parsing a checkpoint's data.pkl with the restricted unpickler, against two baselines.

    .venv/bin/python benchmarks/bench_unpickler.py            # GPT-2 small + AdamW + RNG state, ~1 min
    .venv/bin/python benchmarks/bench_unpickler.py --quick    # a small model, seconds

The file is written by ``save_checkpoint`` (model, AdamW state after one step, the RNG
state of ``capture_rng_state``, config, history); only its ``data.pkl`` is kept. Three
readers parse the same bytes, interleaved, and the median of ``--repeats`` runs is printed:

* ours      -- ``safe_unpickle.load_structure``: the budgeted pure-Python interpreter.
* torch     -- ``torch._weights_only_unpickler`` (what ``torch.load(weights_only=True)``
               runs), its storages on the ``meta`` device so that no byte is read: the
               cost of the pickle alone plus torch's tensor objects.
* C pickle  -- Python's C unpickler with a restricted ``find_class`` building stubs (the
               reader this project used before): fast, but it cannot enforce a budget.

The ratios "ours / torch" and "ours / C pickle" are the result (below 1: ours is faster).
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import pickletools
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch._weights_only_unpickler as weights_only  # noqa: E402

from utils.model.gpt import GPT, config_for_preset  # noqa: E402
from utils.training.engine.checkpoint import save_checkpoint  # noqa: E402
from utils.training.engine.safe_unpickle import TensorStub, load_structure, walk_leaves  # noqa: E402
from utils.training.rng import capture_rng_state  # noqa: E402


def make_data_pkl(workdir: Path, quick: bool) -> bytes:
    """The data.pkl of a full checkpoint (the file itself is deleted)."""
    preset = "tiny" if quick else "gpt2"
    model = GPT(config_for_preset(preset))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    path = save_checkpoint(
        workdir, model, optimizer, epoch=3, global_step=1200, metrics={"train_loss": 3.1, "val_loss": 3.2},
        config={"model": config_for_preset(preset).to_dict()}, rng_state=capture_rng_state(),
        history=[{"epoch": e, "train_loss": 4.0 - e / 10} for e in range(4)], retention=None,
    )  # fmt: skip
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    path.unlink()
    return data


class _MetaUnpickler(weights_only.Unpickler):
    """torch's weights_only unpickler with storages on the meta device (no bytes read)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.storages: dict[str, torch.storage.TypedStorage] = {}

    def persistent_load(self, pid):
        _, storage_type, key, _location, numel = pid
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        if key not in self.storages:
            untyped = torch.UntypedStorage(numel * dtype.itemsize, device="meta")
            self.storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        return self.storages[key]


class _CStubUnpickler(pickle.Unpickler):
    """The C unpickler with a closed find_class that builds stubs (no budget possible)."""

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name.startswith("_rebuild_tensor"):
            return lambda storage, offset, size, stride, *rest: TensorStub(None, size, stride, None, offset)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch":
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        return pid


READERS = {
    "ours": load_structure,
    "torch": lambda data: _MetaUnpickler(data).load(),
    "C pickle": lambda data: _CStubUnpickler(io.BytesIO(data)).load(),
}


def measure(data: bytes, repeats: int) -> dict[str, float]:
    """Median seconds per reader; the readers take turns so that machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in READERS}
    for _ in range(repeats):
        for name, read in READERS.items():
            start = time.perf_counter()
            read(data)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small model: a smoke run in seconds")
    parser.add_argument("--repeats", type=int, default=21, help="runs per reader (median)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new folder under /tmp")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_unpickler_", dir="/tmp"))
    try:
        data = make_data_pkl(workdir, args.quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    tensors = walk_leaves(load_structure(data), TensorStub)
    opcodes = sum(1 for _ in pickletools.genops(data))
    print(
        f"data.pkl: {len(data):,} bytes, {opcodes:,} opcodes, {tensors} tensors ({'tiny' if args.quick else 'gpt2'})"
    )
    seconds = measure(data, args.repeats)
    for name, value in seconds.items():
        print(f"    {name:9s} {value * 1e3:8.2f} ms  (median of {args.repeats})")
    print(f"ours / torch weights_only: {seconds['ours'] / seconds['torch']:.2f}")
    print(f"ours / C pickle: {seconds['ours'] / seconds['C pickle']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
