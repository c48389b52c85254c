"""Background saves on CUDA: pinned, reused host buffers, a snapshot that training cannot change.

    python benchmarks/gpu_async_save_check.py [--out DIR]

GPT-2 small with AdamW on ``cuda:0``. Checks that (1) ``HostSnapshot`` puts every CUDA tensor
into pinned host buffers and reuses them from one save to the next, (2) the file a background
save writes holds the state of the moment of the save, bit for bit, although training took
more steps while it was written, and (3) how long the loop is blocked by a background save against a
synchronous ``save_checkpoint`` of the same state (the issue's target: <= 0.1x).
Not a pytest test: CI has no GPU. Prints one line per check and writes them to
``DIR/gpu_async_save_check.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from utils.model.gpt import GPT, config_for_preset  # noqa: E402
from utils.training.engine.async_save import BackgroundWriter  # noqa: E402
from utils.training.engine.checkpoint import save_checkpoint  # noqa: E402
from utils.training.optim import build_optimizer  # noqa: E402

DEVICE = torch.device("cuda:0")


def _trainer():
    torch.manual_seed(0)
    model = GPT(config_for_preset("gpt2")).to(DEVICE)
    optimizer = build_optimizer(model, 6e-4, 0.1)
    x = torch.randint(model.config.vocab_size, (4, 256), device=DEVICE)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(x, torch.roll(x, -1, 1))
        loss.backward()
        optimizer.step()

    step()
    return model, optimizer, step


def _save(folder, model, optimizer, step_count, **kwargs):
    return save_checkpoint(folder, model, optimizer, epoch=0, global_step=step_count, retention=None,
                           metrics={"val_loss": 3.0}, **kwargs)  # fmt: skip


def check_pinned_and_reused(model, optimizer) -> dict:
    writer = BackgroundWriter()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    first = writer.snapshot.copy(state)
    pointers = [t.data_ptr() for t in first["model"].values()]
    second = writer.snapshot.copy(state)
    pinned = all(t.is_pinned() for t in second["model"].values())
    reused = pointers == [t.data_ptr() for t in second["model"].values()]
    equal = all(torch.equal(second["model"][k], v.cpu()) for k, v in model.state_dict().items())
    return {"check": "snapshot: pinned, reused, equal", "ok": pinned and reused and equal,
            "pinned": pinned, "reused": reused, "equal": equal}  # fmt: skip


def check_the_file_is_the_moment_of_the_save(root: Path, model, optimizer, step) -> dict:
    expected = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    future = _save(root / "moment", model, optimizer, 1, blocking=False, writer=BackgroundWriter())
    for _ in range(3):
        step()  # in-place updates while the file is written
    saved = torch.load(future.result(), map_location="cpu", weights_only=True)["model_state_dict"]
    same = all(torch.equal(saved[k], expected[k]) for k in expected)
    changed = not torch.equal(expected["lm_head.weight"], model.lm_head.weight.detach().cpu())
    return {"check": "file = state at the save, training went on", "ok": same and changed}


def check_blocking_ratio(root: Path, model, optimizer, step, repeats: int = 3) -> dict:
    writer, blocked, synchronous = BackgroundWriter(), [], []
    for index in range(repeats + 1):
        step()
        writer.wait()
        started = time.perf_counter()
        _save(root / "async", model, optimizer, index, blocking=False, writer=writer)
        blocked.append(time.perf_counter() - started)
        writer.wait()
        started = time.perf_counter()
        _save(root / "sync", model, optimizer, index)
        synchronous.append(time.perf_counter() - started)
    ratio = statistics.median(blocked[1:]) / statistics.median(synchronous[1:])
    return {"check": "blocked by a background save / synchronous save", "ok": ratio <= 0.1,
            "ratio": round(ratio, 4), "blocked_s": round(statistics.median(blocked[1:]), 4),
            "first_blocked_s": round(blocked[0], 4), "sync_s": round(statistics.median(synchronous[1:]), 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_async_save_check.py needs a CUDA GPU")
    model, optimizer, step = _trainer()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        results = [
            check_pinned_and_reused(model, optimizer),
            check_the_file_is_the_moment_of_the_save(root, model, optimizer, step),
            check_blocking_ratio(root, model, optimizer, step),
        ]
    for result in results:
        print(("PASS " if result["ok"] else "FAIL ") + json.dumps(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_async_save_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
