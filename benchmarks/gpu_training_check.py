"""Mixed-precision training on CUDA, its checkpoints, and loading them onto ``cuda:0``.

    python benchmarks/gpu_training_check.py [--out DIR]

Trains the tiny preset on the GPU with bf16 autocast and with fp16 + GradScaler, lists the
checkpoints, loads the latest into a fresh CPU model with ``load_model_weights(device="cuda")``
and checks that it lands on ``cuda:0``, verified and equal to the trained weights. Not a pytest
test: CI has no GPU. Its siblings: benchmarks/gpu_loading_check.py (loading GPT-2 small onto the
GPU, peak GPU memory) and tests/training/gpu_resume_check.py (resume exactness on a GPU).
Prints one line per check and writes them to ``DIR/gpu_training_check.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from utils.data.batches import EpochBatches, split_tokens, validation_batches
from utils.data.corpus import load_corpus
from utils.data.tokenizer import get_tokenizer
from utils.model.gpt import GPT, config_for_preset
from utils.training.engine.loading import load_model_weights
from utils.training.engine.recovery import latest_checkpoint, list_checkpoints
from utils.training.loop import TrainConfig, train
from utils.training.optim import build_optimizer, build_scheduler
from utils.training.precision import build_grad_scaler


def _data(block_size: int, batch_size: int, seed: int):
    tokens = torch.tensor(get_tokenizer("bytes").encode(load_corpus()), dtype=torch.long)
    train_tokens, val_tokens = split_tokens(tokens, 0.1)
    batches = EpochBatches(train_tokens, batch_size, block_size, seed, max_batches_per_epoch=12)
    return batches, validation_batches(val_tokens, batch_size, block_size, max_batches=4)


def _run(folder: Path, config: TrainConfig):
    torch.manual_seed(config.seed)
    model_config = config_for_preset("tiny")
    model = GPT(model_config)
    batches, val = _data(model_config.block_size, config.batch_size, config.seed)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    total = config.epochs * batches.batches_per_epoch
    scheduler = build_scheduler(optimizer, config.warmup_steps, total, config.min_lr_ratio)
    scaler = build_grad_scaler(config.mixed_precision, torch.device("cuda"))
    run = train(
        model, optimizer, scheduler, batches, val, config, folder,
        scaler=scaler, progress=False, model_config=model_config,
    )  # fmt: skip
    return model, run


def check_train_and_load(root: Path, precision: str) -> dict:
    folder = root / f"tiny-{precision}"
    config = TrainConfig(epochs=2, batch_size=16, device="cuda", mixed_precision=precision)
    model, run = _run(folder, config)
    listed = list_checkpoints(folder)
    fresh = GPT(config_for_preset("tiny"))
    torch.cuda.synchronize()
    report = load_model_weights(fresh, latest_checkpoint(folder).path, device="cuda")  # the final weights
    devices = {str(p.device) for p in fresh.parameters()}
    same = all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    saved = torch.load(latest_checkpoint(folder).path, map_location="cpu", weights_only=True)
    return {
        "precision": precision,
        "weights_only_load": True,
        "saved_scaler_state": "scaler_state_dict" in saved,
        "saved_cuda_rng_states": len(saved["rng_state"].get("cuda", [])),
        "final_train_loss": run.history[-1]["train_loss"],
        "val_loss": run.history[-1]["val_loss"],
        "checkpoints_listed": len(listed),
        "report_device": report.device,
        "param_devices": sorted(devices),
        "verified": report.verified,
        "loaded_equals_trained": same,
        "mode": report.mode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: this script checks the GPU paths only.")
    results = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, check in (
            ("train_load_bf16", lambda: check_train_and_load(root, "bf16")),
            ("train_load_fp16", lambda: check_train_and_load(root, "fp16")),
        ):
            try:
                results[name] = check()
            except Exception as error:  # report every check, even after one fails
                results[name] = {"error": f"{type(error).__name__}: {error}"}
            print(name, json.dumps(results[name], default=str), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_training_check.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
