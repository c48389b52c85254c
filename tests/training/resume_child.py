"""A training process for tests/training/test_resume_exact.py (run as a script, killed by the test).

    python resume_child.py CKPT_DIR OUT_FILE --epochs 3 --save-every 4 [--resume PATH] [--step-delay 0.05]
        [--device cuda --precision bf16 --deterministic] [--async-save] [--mirror DIR]

Trains the tiny preset on a slice of the bundled corpus and writes the final weights,
per-step losses and history to OUT_FILE.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from utils.data import EpochBatches, get_tokenizer, load_corpus, split_tokens, validation_batches  # noqa: E402
from utils.model import GPT, config_for_preset  # noqa: E402
from utils.training import (  # noqa: E402
    TrainConfig,
    build_optimizer,
    build_scheduler,
    restore_training_state,
    train,
)


class SlowBatches(EpochBatches):
    """Real batches, drawn slowly, so that the parent can kill the run between two saves."""

    delay = 0.0

    def batch(self, epoch, index):
        time.sleep(self.delay)
        return super().batch(epoch, index)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint_dir")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--save-every", type=int, default=0)
    parser.add_argument("--resume", default="none")
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="off")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--async-save", action="store_true")
    parser.add_argument("--mirror", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same kernels and reduction order in every process
    if args.deterministic:  # needs CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment on CUDA
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(1234)
    model_config = config_for_preset("tiny")
    model = GPT(model_config)
    config = TrainConfig(
        epochs=args.epochs, batch_size=4, learning_rate=3e-3, warmup_steps=3, max_batches_per_epoch=6,
        eval_batches=2, save_every_steps=args.save_every, keep_best=100, keep_last=100, seed=7,
        mixed_precision=args.precision, device=args.device, async_save=args.async_save, mirror_dir=args.mirror,
    )  # fmt: skip
    train_tokens, val_tokens = split_tokens(get_tokenizer("bytes").encode(load_corpus()[:20_000]), 0.1)
    batches = SlowBatches(train_tokens, config.batch_size, model_config.block_size, config.seed, 6)
    batches.delay = args.step_delay
    val = validation_batches(val_tokens, config.batch_size, model_config.block_size, config.eval_batches)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = build_scheduler(optimizer, config.warmup_steps, config.epochs * batches.batches_per_epoch)
    resume_state = None
    if args.resume != "none":
        resume_state = restore_training_state(args.resume, model, optimizer, scheduler)
        print(resume_state.render(), flush=True)
    run = train(model, optimizer, scheduler, batches, val, config, args.checkpoint_dir,
                resume_state=resume_state, progress=False)  # fmt: skip
    weights = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    result = {"model": weights, "step_losses": run.step_losses, "history": run.history}
    torch.save(result, args.out)


if __name__ == "__main__":
    main()
