"""Train from the command line, in one process or in many (torchrun): what the notebook trains.

    torchrun --standalone --nproc_per_node=2 -m utils.training.launch \\
        --preset tiny --epochs 2 --checkpoint-dir runs/a --strategy fsdp [--resume latest]
    python -m utils.training.launch --preset tiny --epochs 2 --checkpoint-dir runs/a   # one process

The same pipeline as the notebook's cells: corpus, tokenizer, split (Cells 8-10), preset
(Cell 11), ``TrainConfig`` and batches (Cell 12), seeds then model (Cells 7, 13), AdamW,
warmup + cosine, grad scaler (Cells 18-20), resume (Cells 24-25) and ``train`` (Cell 32).
Every ``TrainConfig`` field is a flag generated from the dataclass (``--batch-size``,
``--stop-after-epochs``, ...), so the two never drift. docs/distributed.md has the commands
for one machine and for several.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from utils.data import check_vocab_fits, get_tokenizer, load_corpus, split_tokens, validation_batches
from utils.model import GPT, PRESETS, config_for_preset
from utils.notebook.runtime import resolve_preset, seed_everything
from utils.training.distributed.context import STRATEGIES, DistributedContext
from utils.training.distributed.data import RankBatches
from utils.training.distributed.resume import restore_for_ranks
from utils.training.distributed.setup import launched_by_torchrun, start, stop, wrap_model
from utils.training.engine.errors import CheckpointError
from utils.training.optim import build_optimizer, build_scheduler
from utils.training.precision import PRECISIONS, build_grad_scaler, resolve_precision
from utils.training.resume import ResumeState, resolve_resume_source
from utils.training.settings import TrainConfig, TrainingRun

__all__ = ["Job", "build_parser", "main", "prepare", "run_job", "train_config_from_args"]

_OPTIONAL_INT_HELP = "an integer, or 0 / none for no limit"


def build_parser() -> argparse.ArgumentParser:
    """The CLI: run settings, then one flag per TrainConfig field."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.training.launch",
        description="Train the notebook's GPT in one process, or in several under torchrun (DDP or FSDP2).",
    )
    run = parser.add_argument_group("run (the notebook's Cell 3)")
    run.add_argument(
        "--preset", default="auto", choices=["auto", *PRESETS], help="model preset (default: auto)"
    )
    run.add_argument("--strategy", default="ddp", choices=STRATEGIES, help="ddp: one checkpoint file; fsdp: "
                     "sharded model, checkpoint folders (default: ddp)")  # fmt: skip
    run.add_argument("--checkpoint-dir", default="./checkpoints", help="shared by every process and machine")
    run.add_argument("--resume", default="none", help="none, latest, or a checkpoint file or folder")
    run.add_argument("--data-path", default="", help="a text file (default: the bundled Tiny Shakespeare)")
    run.add_argument("--tokenizer", default="bytes", choices=["bytes", "gpt2"])
    run.add_argument("--val-fraction", type=float, default=0.1)
    _add_config_flags(
        parser.add_argument_group("training settings (TrainConfig; per process for batch sizes)")
    )
    return parser


def _add_config_flags(group: argparse._ArgumentGroup) -> None:
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        flag, hint, default = (
            "--" + field.name.replace("_", "-"),
            hints[field.name],
            getattr(defaults, field.name),
        )
        help_text = f"TrainConfig.{field.name} (default: {default})"
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif hint in (int, float, str):
            choices = PRECISIONS if field.name == "mixed_precision" else None
            group.add_argument(flag, type=hint, default=default, choices=choices, help=help_text)
        elif hint == int | None:
            group.add_argument(
                flag, type=_optional_int, default=default, help=f"{help_text}; {_OPTIONAL_INT_HELP}"
            )
        elif hint == str | None:
            group.add_argument(flag, type=_optional_str, default=default, help=f"{help_text}; '' for none")
        else:  # a new field of another type must get its flag here, not silently no flag
            raise TypeError(f"TrainConfig.{field.name}: no command-line flag for type {hint!r}")


def _optional_str(text: str) -> str | None:
    return text.strip() or None


def _optional_int(text: str) -> int | None:
    if text.strip().lower() in ("none", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {_OPTIONAL_INT_HELP}, got {text!r}") from None


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the parsed flags.

    Raises:
        ValueError: a setting out of range (TrainConfig says which).
    """
    return TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)})


@dataclass
class Job:
    """Everything one process trains with, built by :func:`prepare`."""

    context: DistributedContext
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    batches: RankBatches
    val_batches: list
    config: TrainConfig
    model_config: Any
    checkpoint_dir: Path
    resume_state: ResumeState | None


def prepare(args: argparse.Namespace, context: DistributedContext) -> Job:
    """Data, model (wrapped for the strategy), optimizer, schedule, scaler and the resumed state.

    Raises:
        ValueError: bad settings. CheckpointError: the resume source cannot be used.
    """
    config = dataclasses.replace(train_config_from_args(args), device=str(context.device))
    if (
        context.strategy == "fsdp"
        and resolve_precision(config.mixed_precision, context.device) is torch.float16
    ):
        raise ValueError("--strategy fsdp trains in float32 or bf16: set --mixed-precision bf16 or off")
    tokenizer = get_tokenizer(args.tokenizer)
    train_tokens, val_tokens = split_tokens(
        tokenizer.encode(load_corpus(args.data_path or None)), args.val_fraction
    )
    preset, _ = resolve_preset(args.preset, context.device)
    model_config = config_for_preset(preset)
    check_vocab_fits(tokenizer, model_config)
    block = model_config.block_size
    batches = RankBatches(train_tokens, config.batch_size, block, config.seed, config.max_batches_per_epoch,
                          rank=context.rank, world_size=context.world_size)  # fmt: skip
    val = validation_batches(val_tokens, config.batch_size, block, config.eval_batches)
    seed_everything(config.seed)  # as Cell 7: the same initial weights on every rank and in the notebook
    model = wrap_model(GPT(model_config), context)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    total = config.epochs * batches.batches_per_epoch
    scheduler = build_scheduler(optimizer, config.warmup_steps, total, config.min_lr_ratio)
    scaler = build_grad_scaler(config.mixed_precision, context.device)
    folder = Path(args.checkpoint_dir).expanduser()
    source = resolve_resume_source(args.resume, folder)
    resume = (
        restore_for_ranks(context, source, model, optimizer, scheduler, scaler, batches) if source else None
    )
    return Job(
        context, model, optimizer, scheduler, scaler, batches, val, config, model_config, folder, resume
    )


def run_job(job: Job) -> TrainingRun:
    """Train the prepared job (every rank calls it); prints on rank 0 only."""
    from utils.training.loop import train

    print(_header(job))
    print(
        job.resume_state.render()
        if job.resume_state
        else "🆕 Fresh start: nothing to restore (epoch 1, step 0)"
    )
    return train(
        job.model, job.optimizer, job.scheduler, job.batches, job.val_batches, job.config, job.checkpoint_dir,
        scaler=job.scaler, resume_state=job.resume_state, progress=job.context.should_print,
        model_config=job.model_config, distributed=job.context,
    )  # fmt: skip


def _header(job: Job) -> str:
    context, batches = job.context, job.batches
    processes = f"{context.world_size} process(es)" + (" (torchrun)" if launched_by_torchrun() else "")
    backend = torch.distributed.get_backend() if context.has_group else "none"
    return (
        f"🖥️  {processes}, strategy {context.strategy}, device {context.device}, backend {backend}; each "
        f"process trains {batches.batches_per_epoch} batches of {batches.batch_size} per epoch"
    )


def _summary(run: TrainingRun) -> str:
    lines = [f"🏁 {run.epochs_completed} epoch(s) completed, {run.global_step} steps, {run.elapsed_s:.1f} s"]
    if run.best_checkpoint:
        lines.append(f"💾 Best checkpoint written this session: {run.best_checkpoint}")
    if run.stop_reason:
        lines.append(f"⏹  Stopped early: {run.stop_reason} (continue with --resume latest)")
    return "\n".join(lines + [f"⚠️  {failure}" for failure in run.save_failures])


@contextlib.contextmanager
def _printing(context: DistributedContext) -> Iterator[None]:
    """Only rank 0 prints: the other ranks' standard output goes nowhere (errors still show)."""
    if context.should_print:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, join the process group, train, leave the group.

    Returns:
        0 when the run finished (or stopped as planned), 1 when it stopped on a save failure or
        was interrupted, 2 when it could not start (bad settings, unusable checkpoint).
    """
    args = build_parser().parse_args(argv)
    context = start(args.strategy, args.device)
    try:
        with _printing(context):
            job = prepare(args, context)
            run = run_job(job)
            print(_summary(run))
    except (CheckpointError, ValueError) as error:
        if context.should_print:
            print(f"❌ {error}", file=sys.stderr)
        return 2
    finally:
        stop(context)
    return 1 if run.stop_reason else 0


if __name__ == "__main__":
    sys.exit(main())
