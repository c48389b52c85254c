"""Memory, speed and plan figures: right arithmetic, and the probe leaves the model untouched."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.training.conftest import make_setup
from utils.notebook.planning import (
    MemoryEstimate,
    checkpoint_size_bytes,
    estimate_memory,
    format_bytes,
    format_duration,
    measure_throughput,
    plan_training,
    retention_lines,
)
from utils.training import restore_training_state, train
from utils.training.loop import TrainConfig


class TestFormatting:
    def test_bytes(self):
        assert (format_bytes(512), format_bytes(1536), format_bytes(3 * 1024**3)) == (
            "512 B",
            "1.5 KiB",
            "3.0 GiB",
        )

    def test_duration(self):
        assert (format_duration(5), format_duration(75), format_duration(4000)) == (
            "5.0 s",
            "1 min 15 s",
            "1 h 6 min",
        )


class TestEstimateMemory:
    def test_adam_doubles_the_weights_and_fit_verdict(self, tiny_model):
        estimate = estimate_memory(tiny_model, batch_size=2, available=10**9)
        assert estimate.optimizer == 2 * estimate.weights and estimate.fits
        assert not estimate_memory(tiny_model, 2, available=1000).fits
        assert "Probably does not fit" in "\n".join(estimate_memory(tiny_model, 2, 1000).lines())

    def test_the_epoch_start_copy_counts_on_a_cpu_and_is_host_ram_on_a_gpu(self, tiny_model):
        on_cpu = estimate_memory(tiny_model, 2, 10**9, device="cpu")
        on_gpu = estimate_memory(tiny_model, 2, 10**9, device="cuda")  # a device name only: nothing allocated
        assert on_cpu.epoch_copy == on_cpu.weights and on_cpu.total == on_gpu.total + on_gpu.epoch_copy
        assert "epoch-start copy" in on_cpu.lines()[1]
        assert "host RAM: epoch-start copy of the weights" in "\n".join(on_gpu.lines("cuda"))

    def test_background_saves_add_the_snapshot_on_the_cpu(self, tiny_model):
        plain = estimate_memory(tiny_model, 2, available=10**9)
        background = estimate_memory(tiny_model, 2, available=10**9, async_save=True)
        assert background.snapshot == checkpoint_size_bytes(tiny_model) and background.snapshot_in_total
        assert background.total == plain.total + background.snapshot
        assert "+ snapshot for background saves" in "\n".join(background.lines("cpu"))
        tight = estimate_memory(tiny_model, 2, available=int(plain.total / 0.85), async_save=True)
        assert plain.total < 0.9 * tight.available and not tight.fits
        assert "or set ASYNC_SAVE = False" in "\n".join(tight.lines())

    def test_beside_a_gpu_the_snapshot_is_host_ram(self):
        gpu = MemoryEstimate(100, 100, 200, 50, available=1000, snapshot=400, snapshot_in_total=False,
                             host_available=10**4)  # fmt: skip
        assert (
            gpu.total == 450
            and "Host RAM for background saves (ASYNC_SAVE): ~400 B pinned" in gpu.lines()[-1]
        )
        small_host = MemoryEstimate(
            100, 100, 200, 50, 1000, snapshot=400, snapshot_in_total=False, host_available=450
        )
        assert "probably too much for 450 B of RAM; set ASYNC_SAVE = False" in small_host.lines()[-1]


class TestCheckpointSize:
    def test_tied_weights_counted_once(self, tiny_model):
        params = sum(p.numel() for p in tiny_model.parameters())
        assert checkpoint_size_bytes(tiny_model, with_optimizer=False) == params * 4 + 64 * 1024


class TestMeasureThroughput:
    def test_positive_and_no_side_effects(self, tiny_model, val_batches):
        before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
        rng = torch.get_rng_state()
        result = measure_throughput(tiny_model, val_batches[0], repeats=1)
        assert result.seconds_per_step > 0 and result.tokens_per_second > 0
        assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
        assert torch.equal(rng, torch.get_rng_state()) and all(
            p.grad is None for p in tiny_model.parameters()
        )


class TestPlanTraining:
    def test_counts_saves_steps_and_disk(self):
        config = TrainConfig(epochs=4, save_every_steps=50, keep_best=1, keep_last=2)
        plan = plan_training(config, batches_per_epoch=120, checkpoint_bytes=100, free_disk=10**6)
        # mid-epoch saves at global steps 50, 100, ..., 450 (9) + 4 epoch ends; was pinned at 12 (per-epoch count)
        assert (plan.total_steps, plan.steps_to_run, plan.saves, plan.disk_needed) == (480, 480, 13, 400)

    def test_resume_and_session_limit(self):
        config = TrainConfig(epochs=10, stop_after_epochs=3)
        resume = SimpleNamespace(epoch=2, batch_in_epoch=0, global_step=20)
        plan = plan_training(
            config, batches_per_epoch=10, resume_state=resume, checkpoint_bytes=1, free_disk=1
        )
        assert (plan.end_epoch, plan.steps_to_run) == (5, 30)
        assert "this session stops after epoch 5" in "\n".join(plan.lines())

    def test_mid_epoch_resume_counts_the_rest_of_the_epoch(self):
        config = TrainConfig(epochs=2, save_every_steps=4)
        resume = SimpleNamespace(epoch=0, batch_in_epoch=4, global_step=4)
        plan = plan_training(
            config, batches_per_epoch=5, resume_state=resume, checkpoint_bytes=1, free_disk=1
        )
        assert (plan.steps_to_run, plan.saves) == (6, 3)  # steps 5 (epoch end), 8, 10 (epoch end)

    def test_not_enough_disk_is_flagged(self):
        plan = plan_training(TrainConfig(epochs=1), batches_per_epoch=1, checkpoint_bytes=10**9, free_disk=10)
        assert "Not enough disk" in "\n".join(plan.lines())

    def test_bad_batches(self):
        with pytest.raises(ValueError, match="batches_per_epoch"):
            plan_training(TrainConfig(), batches_per_epoch=0, checkpoint_bytes=1, free_disk=1)


class TestPlanMatchesTrain:
    """The plan's save count is the number of files train() writes: one rule, in TrainConfig."""

    @pytest.mark.parametrize(
        "settings",
        [
            dict(epochs=3, save_every_steps=3),
            dict(epochs=2, save_every_steps=5),
            dict(epochs=3, stop_after_epochs=2),
        ],
    )
    def test_fresh_run(self, tmp_path, settings):
        s = make_setup(**settings)
        plan = plan_training(s.config, batches_per_epoch=len(s.batches), checkpoint_bytes=1, free_disk=1)
        run = train(*s.args(tmp_path), progress=False)
        assert plan.saves == len(run.checkpoints) and plan.steps_to_run == len(run.step_losses)

    def test_resumed_mid_epoch(self, tmp_path):
        first = make_setup(epochs=3, save_every_steps=4)
        mid_epoch = train(*first.args(tmp_path / "a"), progress=False).checkpoints[0]  # step 4, batch 4 of 5
        s = make_setup(epochs=3, save_every_steps=4)
        resume = restore_training_state(mid_epoch, s.model, s.optimizer, s.scheduler)
        plan = plan_training(
            s.config, batches_per_epoch=len(s.batches), resume_state=resume, checkpoint_bytes=1, free_disk=1
        )
        run = train(*s.args(tmp_path / "b"), resume_state=resume, progress=False)
        assert plan.saves == len(run.checkpoints) == 5  # steps 5, 8, 10, 12, 15
        assert plan.steps_to_run == run.global_step - resume.global_step == 11


class TestRetentionLines:
    def test_states_the_counts(self):
        assert "best 2 by val_loss + the latest 3" in retention_lines(2, 3)[0]
