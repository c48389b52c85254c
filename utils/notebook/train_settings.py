"""Cell 12: the Cell 3 form settings become one TrainConfig, the run's single source of truth.

The batches (Cell 12), optimizer (Cell 18), schedule (Cell 19), precision (Cell 20)
and training itself (Cell 32) all read ``train_config``; every checkpoint stores it.
So the values a checkpoint records are the values the run used, and a resume's
"setting changed" warnings compare like with like.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from utils.training.settings import TrainConfig

__all__ = ["SETTING_NAMES", "train_config_from"]

# TrainConfig field <- Cell 3 setting.
SETTING_NAMES = {
    "epochs": "EPOCHS",
    "batch_size": "BATCH_SIZE",
    "learning_rate": "LEARNING_RATE",
    "weight_decay": "WEIGHT_DECAY",
    "warmup_steps": "WARMUP_STEPS",
    "min_lr_ratio": "MIN_LR_RATIO",
    "max_batches_per_epoch": "MAX_BATCHES_PER_EPOCH",
    "eval_batches": "EVAL_BATCHES",
    "save_every_steps": "SAVE_EVERY_STEPS",
    "keep_best": "KEEP_BEST",
    "keep_last": "KEEP_LAST",
    "seed": "SEED",
    "mixed_precision": "MIXED_PRECISION",
    "stop_after_epochs": "EPOCHS_THIS_SESSION",
    "async_save": "ASYNC_SAVE",
    "mirror_dir": "MIRROR_DIR",  # after Cell 4: the Drive folder with USE_DRIVE
}
# A 0 (or "") in these means "no limit" / "none" on the form.
_ZERO_MEANS_NONE = ("max_batches_per_epoch", "eval_batches", "stop_after_epochs", "mirror_dir")


def train_config_from(settings: Mapping[str, Any], device: torch.device | str) -> TrainConfig:
    """The TrainConfig of the notebook's form settings (``globals()``) and resolved device.

    Args:
        settings: the notebook's namespace; the names in :data:`SETTING_NAMES` are read.
        device: the device Cell 5 resolved (stored as its name).

    Returns:
        The validated TrainConfig.

    Raises:
        NameError: a setting is missing (run Cell 3 first).
        ValueError: a setting is out of range (TrainConfig says which).
    """
    missing = [name for name in SETTING_NAMES.values() if name not in settings]
    if missing:
        raise NameError(f"settings {', '.join(missing)} are not defined: run Cell 3 (Parameters) first")
    values = {field: settings[name] for field, name in SETTING_NAMES.items()}
    for field in _ZERO_MEANS_NONE:
        values[field] = values[field] or None
    if isinstance(values["mirror_dir"], str):
        values["mirror_dir"] = values["mirror_dir"].strip() or None
    init_from = str(settings.get("INIT_FROM") or "").strip() or "scratch"  # optional: older notebooks lack it
    return TrainConfig(**values, device=str(device), init_from=init_from)
