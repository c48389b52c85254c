"""Before training: memory needed, measured speed, and the plan (Cells 21-23).

Numbers a Colab user wants before pressing "run": will it fit, how long will
it take, and will the checkpoints fill the disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from utils.notebook.checks import preserved_rng
from utils.training.analysis.epoch_change import snapshot_bytes

__all__ = [
    "MemoryEstimate",
    "estimate_memory",
    "checkpoint_size_bytes",
    "Throughput",
    "measure_throughput",
    "TrainingPlan",
    "plan_training",
    "retention_lines",
    "available_memory",
    "format_bytes",
    "format_duration",
]

# AdamW keeps two float32 moments per parameter.
ADAM_STATES = 2
# The speed probe times forward + backward only; the optimizer step and evaluation add ~20%.
STEP_OVERHEAD = 1.2


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """75 -> '1 min 15 s'; 4000 -> '1 h 6 min'."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes for weights, gradients, optimizer state and activations, against what is available."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    available: int | None
    snapshot: int = 0  # host memory for background saves (ASYNC_SAVE): a copy of weights + AdamW state
    # On the CPU the host copies (snapshot, epoch_copy) share training's memory; beside a GPU they are host RAM.
    snapshot_in_total: bool = True
    host_available: int | None = None  # host RAM, when the snapshot does not share training's memory
    # The epoch-start copy of the weights the loop keeps in host RAM for the history's per-layer
    # change record (Cell 37).
    epoch_copy: int = 0

    @property
    def total(self) -> int:
        shared = self.snapshot + self.epoch_copy if self.snapshot_in_total else 0
        return self.weights + self.gradients + self.optimizer + self.activations + shared

    @property
    def fits(self) -> bool | None:
        return None if self.available is None else self.total < 0.9 * self.available

    def lines(self, device: str = "") -> list[str]:
        where = f" on {device}" if device else ""
        lines = [
            f"🧮 Training memory estimate{where}: ~{format_bytes(self.total)}",
            f"   weights {format_bytes(self.weights)} + gradients {format_bytes(self.gradients)} + "
            f"AdamW state {format_bytes(self.optimizer)} + activations ~{format_bytes(self.activations)}"
            + (
                f" + snapshot for background saves {format_bytes(self.snapshot)}"
                if self._shared_snapshot
                else ""
            )
            + (f" + epoch-start copy {format_bytes(self.epoch_copy)}" if self.snapshot_in_total else ""),
        ]
        if not self.snapshot_in_total:
            lines.append(
                f"   + host RAM: epoch-start copy of the weights {format_bytes(self.epoch_copy)} "
                "(for the per-layer change record, Cell 37)"
            )
        if self.available is None:
            lines.append("   available: unknown")
        elif self.fits:
            lines.append(f"✅ Fits: {format_bytes(self.available)} available")
        else:
            lines.append(
                f"❌ Probably does not fit in {format_bytes(self.available)}: lower BATCH_SIZE, "
                "use MIXED_PRECISION, or pick a smaller MODEL_PRESET"
                + (", or set ASYNC_SAVE = False" if self._shared_snapshot else "")
            )
        if self.snapshot and not self.snapshot_in_total:
            lines.append(self._host_line())
        return lines

    @property
    def _shared_snapshot(self) -> bool:
        return bool(self.snapshot) and self.snapshot_in_total

    def _host_line(self) -> str:
        line = f"🧠 Host RAM for background saves (ASYNC_SAVE): ~{format_bytes(self.snapshot)} pinned, held between saves"
        if self.host_available is None:
            return line
        if self.snapshot < 0.8 * self.host_available:
            return line + f" ({format_bytes(self.host_available)} RAM)"
        return (
            line
            + f": ❌ probably too much for {format_bytes(self.host_available)} of RAM; set ASYNC_SAVE = False"
        )


def estimate_memory(
    model: torch.nn.Module,
    batch_size: int,
    available: int | None,
    *,
    device: torch.device | str | None = None,
    async_save: bool = False,
) -> MemoryEstimate:
    """A rough upper bound on training memory for ``model`` with AdamW.

    Activations: about 16 floats per token per layer per embedding width plus the
    logits (B*T*vocab floats, twice for the softmax and its gradient). The training loop
    also keeps a copy of the weights in host RAM (the epoch start, for the per-layer
    change record): counted in the total on a CPU, listed as host RAM on a GPU.

    Args:
        device: where training runs (default: where the model's parameters are).
        async_save: background saves keep a host copy of the weights and AdamW state
            (``checkpoint_size_bytes``): part of the total on a CPU, host RAM beside a GPU.
    """
    params = sum(p.numel() for p in model.parameters())
    bytes_per = next(model.parameters()).element_size()
    cfg = model.config
    tokens = batch_size * cfg.block_size
    activations = 4 * tokens * (16 * cfg.n_layer * cfg.n_embd + 2 * cfg.vocab_size)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    return MemoryEstimate(
        weights=params * bytes_per,
        gradients=params * bytes_per,
        optimizer=ADAM_STATES * params * 4,
        activations=activations,
        available=available,
        snapshot=checkpoint_size_bytes(model) if async_save else 0,
        snapshot_in_total=device.type == "cpu",
        host_available=_host_ram() if async_save else None,
        epoch_copy=snapshot_bytes(model),
    )


def _host_ram() -> int | None:
    from utils.notebook.runtime import _total_ram_bytes

    return _total_ram_bytes()


def available_memory(device: torch.device) -> int | None:
    """Free GPU memory on a CUDA device; total RAM on the CPU (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    from utils.notebook.runtime import _total_ram_bytes

    return _total_ram_bytes()


def checkpoint_size_bytes(model: torch.nn.Module, with_optimizer: bool = True) -> int:
    """Expected size of one checkpoint file: the weights (tied tensors once) plus AdamW's moments."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return weights + (ADAM_STATES * params * 4 if with_optimizer else 0) + 64 * 1024


@dataclass(frozen=True)
class Throughput:
    """Measured speed of one training step (forward + backward, no optimizer step)."""

    seconds_per_step: float
    tokens_per_second: float

    def lines(self, steps_per_epoch: int) -> list[str]:
        epoch = format_duration(STEP_OVERHEAD * self.seconds_per_step * steps_per_epoch)
        return [
            f"⚡ {self.seconds_per_step * 1000:.1f} ms per step, {self.tokens_per_second:,.0f} tokens/s",
            f"   one epoch ({steps_per_epoch} steps): ~{epoch}",
        ]


def measure_throughput(
    model: torch.nn.Module, batch, repeats: int = 3, amp_dtype: torch.dtype | None = None
) -> Throughput:
    """Time forward + backward on ``batch``; the first (warm-up) pass is not counted.

    No optimizer step is taken and the gradients are cleared, so the weights and
    the random generators are unchanged afterwards.
    """
    device = next(model.parameters()).device
    x, y = batch[0].to(device), batch[1].to(device)
    timings = []
    with preserved_rng(model):
        for _ in range(repeats + 1):
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                _, loss = model(x, y)
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    per_step = min(timings[1:]) if repeats else timings[0]
    return Throughput(per_step, x.numel() / per_step)


@dataclass(frozen=True)
class TrainingPlan:
    """The run ahead: steps, checkpoints, time and disk."""

    epochs: int
    start_epoch: int
    end_epoch: int  # this session stops after this epoch (EPOCHS_THIS_SESSION)
    batches_per_epoch: int
    save_every_steps: int
    saves: int  # checkpoints this session writes (TrainConfig.planned_saves: the loop's own rule)
    checkpoint_bytes: int
    kept_checkpoints: int
    free_disk: int
    seconds_per_step: float | None
    start_batch: int = 0  # batches of start_epoch already trained (a mid-epoch resume)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.batches_per_epoch

    @property
    def steps_to_run(self) -> int:
        return max(0, (self.end_epoch - self.start_epoch) * self.batches_per_epoch - self.start_batch)

    @property
    def disk_needed(self) -> int:
        # retention deletes only after a new file is in place: one extra file at the peak
        return (min(self.kept_checkpoints, self.saves) + 1) * self.checkpoint_bytes

    def lines(self) -> list[str]:
        session = (
            "" if self.end_epoch == self.epochs else f", this session stops after epoch {self.end_epoch}"
        )
        cadence = "every epoch" + (
            f" and every {self.save_every_steps} steps" if self.save_every_steps > 0 else ""
        )
        lines = [
            f"📅 Epochs: {self.epochs} planned, starting at epoch {self.start_epoch + 1}{session}",
            f"🔁 Steps: {self.batches_per_epoch} per epoch, {self.total_steps} planned, {self.steps_to_run} to run now",
            f"💾 Checkpoints: {self.saves} saves ({cadence}), at most {self.kept_checkpoints} kept",
            f"📦 Disk: ~{format_bytes(self.checkpoint_bytes)} per checkpoint, ~{format_bytes(self.disk_needed)} "
            f"at the peak, {format_bytes(self.free_disk)} free",
        ]
        if self.seconds_per_step is not None:
            eta = STEP_OVERHEAD * self.seconds_per_step * self.steps_to_run
            lines.append(f"⏱️  Estimated time: {format_duration(eta)}")
        if self.steps_to_run == 0:
            lines.append("ℹ️  Nothing to train: the run already reached EPOCHS. Raise EPOCHS to continue it.")
        if self.disk_needed > self.free_disk:
            lines.append(
                "❌ Not enough disk for the kept checkpoints: lower KEEP_LAST / KEEP_BEST or free space"
            )
        return lines


def plan_training(
    train_config,
    *,
    batches_per_epoch: int,
    resume_state=None,
    checkpoint_bytes: int,
    free_disk: int,
    seconds_per_step: float | None = None,
) -> TrainingPlan:
    """Assemble the plan that Cell 26 prints (see :class:`TrainingPlan`).

    Args:
        train_config: the TrainConfig; its ``last_epoch`` and ``planned_saves`` are the
            training loop's own rules, so the plan counts exactly the checkpoints train() writes.
        batches_per_epoch: len(train_batches).
        resume_state: Cell 25's ResumeState (None: a fresh start); its epoch, batch and
            global step are where this session starts.

    Raises:
        ValueError: batches_per_epoch < 1.
    """
    if batches_per_epoch < 1:
        raise ValueError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")
    start_epoch, start_batch, start_step = _start_of(resume_state, batches_per_epoch)
    saves = train_config.planned_saves(
        batches_per_epoch, start_epoch=start_epoch, start_batch=start_batch, start_step=start_step
    )
    return TrainingPlan(
        epochs=train_config.epochs,
        start_epoch=start_epoch,
        end_epoch=train_config.last_epoch(start_epoch),
        batches_per_epoch=batches_per_epoch,
        save_every_steps=train_config.save_every_steps,
        saves=saves,
        start_batch=start_batch,
        checkpoint_bytes=checkpoint_bytes,
        kept_checkpoints=train_config.keep_best + train_config.keep_last,
        free_disk=free_disk,
        seconds_per_step=seconds_per_step,
    )


def _start_of(resume_state, batches_per_epoch: int) -> tuple[int, int, int]:
    """(epoch, batch in that epoch, global step) where the session starts, as train() reads them."""
    if resume_state is None:
        return 0, 0, 0
    batch = min(resume_state.batch_in_epoch, batches_per_epoch)
    return resume_state.epoch, batch, resume_state.global_step


def retention_lines(keep_best: int, keep_last: int) -> list[str]:
    """The checkpoint policy in words."""
    return [
        f"🗂️  Retention: keep the best {keep_best} by val_loss + the latest {keep_last} by step "
        f"(at most {keep_best + keep_last} files)",
        "   • the best and the newest checkpoint are never deleted",
        "   • old files are deleted only after the new one is safely written (atomic save: temp file, fsync, rename)",
        "   • every checkpoint holds the weights, optimizer, scheduler, RNG state and data position for an exact resume",
    ]
