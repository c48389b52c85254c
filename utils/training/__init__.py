"""Training: optimizer and schedule, the loop, exact resume, random-generator state.

The checkpoint engine lives in ``utils.training.engine`` and imports nothing from here.
Names are imported lazily (PEP 562), so that importing the engine (a sub-package) does
not import the training loop; to export a new name, add one line to ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS = {
    "TrainConfig": "loop",
    "TrainingRun": "loop",
    "evaluate": "loop",
    "train": "loop",
    "WarmupCosine": "optim",
    "build_optimizer": "optim",
    "build_scheduler": "optim",
    "PRECISIONS": "precision",
    "build_grad_scaler": "precision",
    "resolve_device": "precision",
    "resolve_precision": "precision",
    "ResumeState": "resume",
    "describe_changes": "resume",
    "render_resume_report": "resume",
    "resolve_resume_source": "resume",
    "restore_training_state": "resume",
    "RngRestoreReport": "rng",
    "capture_rng_state": "rng",
    "restore_rng_state": "rng",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
