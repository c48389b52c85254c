"""Cells 11, 14, 18-20, 23 and 30: the model, optimizer and settings as readable tables."""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict

import torch

__all__ = [
    "config_lines",
    "parameter_table",
    "optimizer_lines",
    "schedule_preview",
    "precision_lines",
    "settings_table",
    "maybe_compile",
]


def config_lines(config, preset: str, tokenizer=None) -> list[str]:
    """The model config as a table, with the tokenizer's use of the vocabulary."""
    lines = [f"🧠 Preset: {preset}"]
    for name, value in config.to_dict().items():
        lines.append(f"   {name:<11} {value}")
    if tokenizer is not None and tokenizer.vocab_size < config.vocab_size:
        lines.append(
            f"ℹ️  The {tokenizer.name} tokenizer uses {tokenizer.vocab_size:,} of the {config.vocab_size:,} "
            "embedding rows; the rest stay unused (fine, just wasteful)."
        )
    return lines


def _group_name(name: str) -> str:
    """'transformer.h.3.attn.c_attn.weight' -> 'transformer.h.3'; 'lm_head.weight' -> 'lm_head'."""
    match = re.match(r"^(transformer\.h\.\d+)\.", name)
    if match:
        return match[1]
    return name.rsplit(".", 1)[0]


def parameter_table(model: torch.nn.Module) -> list[str]:
    """Parameters per module (blocks grouped), each shared tensor counted once, with totals."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for name, param in model.named_parameters():  # lists a tied tensor once, under its first name
        count_tensors = groups.setdefault(_group_name(name), [0, 0])
        count_tensors[0] += param.numel()
        count_tensors[1] += 1
    total = sum(c for c, _ in groups.values())
    lines = [f"{'module':<22} {'tensors':>7} {'parameters':>13} {'share':>7}", "-" * 52]
    for group, (count, tensors) in groups.items():
        lines.append(f"{group:<22} {tensors:>7} {count:>13,} {count / total:>7.1%}")
    lines.append("-" * 52)
    named = sum(t for _, t in groups.values())
    lines.append(f"{'total':<22} {named:>7} {total:>13,}")
    tied = getattr(model, "lm_head", None)
    if tied is not None and tied.weight is model.transformer.wte.weight:
        lines.append("ℹ️  lm_head.weight is tied to transformer.wte.weight (one tensor, counted once)")
    return lines


def optimizer_lines(optimizer: torch.optim.Optimizer) -> list[str]:
    """The optimizer, its hyperparameters and its parameter groups."""
    defaults = optimizer.defaults
    lines = [
        f"⚙️  {type(optimizer).__name__}: lr={defaults['lr']:g}, betas={tuple(defaults.get('betas', ()))}"
    ]
    for index, group in enumerate(optimizer.param_groups):
        count = sum(p.numel() for p in group["params"])
        lines.append(
            f"   group {index}: {len(group['params'])} tensors, {count:,} parameters, "
            f"weight_decay={group['weight_decay']:g}"
        )
    lines.append("   (matrices and embeddings decay; biases and LayerNorm weights do not)")
    return lines


def schedule_preview(scheduler, total_steps: int) -> list[float]:
    """The learning rate of every step 0..total_steps-1, computed without stepping ``scheduler``."""
    fn, base = scheduler.lr_lambdas[0], scheduler.base_lrs[0]
    return [base * fn(step) for step in range(total_steps)]


def precision_lines(amp_dtype: torch.dtype | None, scaler, device: torch.device) -> list[str]:
    """What the mixed-precision setting resolved to on this device."""
    if amp_dtype is None:
        reason = "the CPU trains in float32" if device.type == "cpu" else "mixed precision is off"
        return [f"🎚️  Precision: float32 ({reason})"]
    name = str(amp_dtype).replace("torch.", "")
    scaled = (
        "with a GradScaler (float16 needs loss scaling)" if scaler is not None else "no loss scaling needed"
    )
    return [
        f"🎚️  Precision: autocast to {name} on {device}, {scaled}",
        "   Weights and optimizer state stay float32.",
    ]


def settings_table(config) -> list[str]:
    """A dataclass (TrainConfig) as aligned ``name  value`` lines."""
    values = dataclasses.asdict(config)
    width = max(map(len, values))
    return [f"   {name:<{width}}  {value}" for name, value in values.items()]


def maybe_compile(model: torch.nn.Module, enabled: bool, device: torch.device) -> tuple[torch.nn.Module, str]:
    """``torch.compile`` the model when asked and useful (a CUDA GPU); say what happened.

    Checkpoints stay clean: the saver unwraps the compiled model, and the loader
    strips ``_orig_mod.`` from files written by other code.
    """
    if not enabled:
        return model, "⏭️  torch.compile off (COMPILE = False): training runs eagerly"
    if device.type != "cuda":
        return (
            model,
            "⏭️  torch.compile skipped: it pays off on a GPU; on the CPU compiling costs more than it saves",
        )
    if hasattr(model, "_orig_mod"):
        return model, "✅ Model already compiled"
    return torch.compile(
        model
    ), "✅ Model compiled with torch.compile (the first steps are slower while it compiles)"
