"""Training: optimizer and schedule, the loop, exact resume, random-generator state.

The checkpoint engine lives in ``utils.training.engine``.
"""

from utils.training.loop import TrainConfig, TrainingRun, evaluate, train
from utils.training.optim import WarmupCosine, build_optimizer, build_scheduler
from utils.training.precision import PRECISIONS, build_grad_scaler, resolve_device, resolve_precision
from utils.training.resume import (
    ResumeState,
    describe_changes,
    render_resume_report,
    resolve_resume_source,
    restore_training_state,
)
from utils.training.rng import RngRestoreReport, capture_rng_state, restore_rng_state

__all__ = [
    "PRECISIONS",
    "ResumeState",
    "RngRestoreReport",
    "TrainConfig",
    "TrainingRun",
    "WarmupCosine",
    "build_grad_scaler",
    "build_optimizer",
    "build_scheduler",
    "capture_rng_state",
    "describe_changes",
    "evaluate",
    "render_resume_report",
    "resolve_device",
    "resolve_precision",
    "resolve_resume_source",
    "restore_rng_state",
    "restore_training_state",
    "train",
]
