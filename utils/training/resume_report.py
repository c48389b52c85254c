"""What a resume restored and what will differ: ``ResumeState``, its report, and the settings changed since.

``restore_training_state`` (resume.py) fills a :class:`ResumeState`; the training cell prints
:func:`render_resume_report`, and ``train()`` prints :func:`describe_changes` before the first step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Training settings whose change makes a resumed run differ from the uninterrupted one.
_EXACTNESS_SETTINGS = (
    "batch_size",
    "learning_rate",
    "weight_decay",
    "warmup_steps",
    "min_lr_ratio",
    "grad_clip",
    "max_batches_per_epoch",
    "seed",
    "mixed_precision",
)


@dataclass
class ResumeState:
    """Where a resumed run continues, and what could and could not be restored.

    ``epoch``/``batch_in_epoch``: the next batch to train is ``batch_in_epoch`` of ``epoch``
    (0-based); an epoch-end checkpoint continues at batch 0 of the next epoch.
    """

    checkpoint_path: Path
    kind: str
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_state: dict[str, Any] | None = None
    training_config: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None  # kept when no scaler was given to restore into
    run_id: str | None = None  # the resumed run's id: its checkpoints stay under one retention

    @property
    def exact(self) -> bool:
        """True when nothing is missing: the run continues as if it had never stopped."""
        return not self.missing

    def render(self) -> str:
        return render_resume_report(self)


def render_resume_report(state: ResumeState) -> str:
    """Readable lines for the training cell: source, position, restored, missing, notes."""
    lines = [
        f"🔁 RESUMING from {state.checkpoint_path.name} ({state.kind} checkpoint)",
        f"   Continues at epoch {state.epoch + 1}, batch {state.batch_in_epoch + 1} (global step {state.global_step})",
        f"   ✅ Restored: {', '.join(state.restored)}",
    ]
    if state.missing:
        lines.append("   ⚠️  Missing from the file (this run will differ from an uninterrupted one):")
        lines += [f"      - {item}" for item in state.missing]
    else:
        lines.append(
            "   ✅ Complete state: the run continues exactly where it stopped (bit-exact on the CPU)."
        )
    lines += [f"   ℹ️  {note}" for note in state.notes]
    return "\n".join(lines)


def describe_changes(state: ResumeState, config: Any, batches: Any, scheduler: Any = None) -> list[str]:
    """Lines naming each current setting that differs from the resumed run's (empty: none).

    Args:
        state: from :func:`restore_training_state`.
        config: the current TrainConfig.
        batches: the current EpochBatches.
        scheduler: the current (restored) scheduler, to compare its planned length.
    """
    lines = []
    saved = state.training_config or {}
    for name in _EXACTNESS_SETTINGS:
        if name in saved and saved[name] != getattr(config, name):
            keep = (
                " (the optimizer keeps the checkpoint's value)"
                if name in ("learning_rate", "weight_decay")
                else ""
            )
            lines.append(
                f"{name} changed since the checkpoint: {saved[name]!r} -> {getattr(config, name)!r}{keep}"
            )
    data = state.data_state or {}
    if data and (data.get("seed"), data.get("batches_per_epoch")) != (
        batches.seed,
        batches.batches_per_epoch,
    ):
        lines.append(
            f"the data differs from the checkpoint's (seed {data.get('seed')} -> {batches.seed}, batches per "
            f"epoch {data.get('batches_per_epoch')} -> {batches.batches_per_epoch}): the batch order will differ"
        )
    world, now = data.get("world_size", 1), getattr(batches, "world_size", 1)
    if data and world != now:
        lines.append(
            f"the checkpoint was written by {world} process(es), this run has {now}: each process reads "
            "another part of every epoch, so the data order per process differs from the original run's"
        )
    planned = getattr((getattr(scheduler, "lr_lambdas", None) or [None])[0], "total_steps", None)
    wanted = config.epochs * batches.batches_per_epoch
    if planned is not None and planned != wanted:
        lines.append(
            f"the restored LR schedule plans {planned} steps, EPOCHS x batches now gives {wanted}: the "
            "checkpoint's schedule is kept (after its end the LR stays at its minimum)"
        )
    return lines
