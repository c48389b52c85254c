"""Cell 26's saving plan: snapshot memory, mirror copy time, the warning when saves outrun it, Drive trash."""

from __future__ import annotations

from pathlib import Path

from utils.notebook.durability import MirrorReport
from utils.notebook.folders import FolderReport
from utils.notebook.planning import TrainingPlan
from utils.notebook.save_plan import plan_saving

GB = 10**9


def training_plan(save_every_steps=100, saves=10, seconds_per_step=0.1, batches=1000) -> TrainingPlan:
    return TrainingPlan(epochs=1, start_epoch=0, end_epoch=1, batches_per_epoch=batches,
                        save_every_steps=save_every_steps, saves=saves, checkpoint_bytes=GB, kept_checkpoints=3,
                        free_disk=100 * GB, seconds_per_step=seconds_per_step)  # fmt: skip


def drive_mirror(checkpoints=0, speed=50e6) -> MirrorReport:
    return MirrorReport(Path("/content/drive/MyDrive/ck"), True, 10 * GB, checkpoints, speed, on_drive=True)


class TestPlanSaving:
    def test_background_saves_state_their_host_memory(self):
        text = "\n".join(plan_saving(training_plan(), async_save=True, snapshot_bytes=GB).lines())
        assert (
            "in the background (ASYNC_SAVE)" in text and "needs ~953.7 MiB of RAM, held between saves" in text
        )
        blocking = plan_saving(training_plan(), async_save=False, snapshot_bytes=GB)
        assert blocking.snapshot_bytes == 0 and "synchronous (ASYNC_SAVE = False)" in blocking.lines()[0]

    def test_mirror_copy_time_at_the_measured_speed(self):
        plan = plan_saving(training_plan(save_every_steps=500), async_save=True, snapshot_bytes=GB,
                           mirror_dir="/m", mirror_report=MirrorReport(Path("/m"), True, None, 0, 50e6))  # fmt: skip
        assert plan.copy_s == 20.0 and plan.mirror_keeps_up  # 500 steps x 0.12 s = 60 s between saves
        assert "one copy of ~953.7 MiB to /m takes ~20.0 s at the measured 50 MB/s" in "\n".join(plan.lines())
        assert not any(line.startswith("⚠️") or "trash" in line for line in plan.lines())  # not on Drive

    def test_warns_when_saves_come_faster_than_a_copy_and_says_what_keeps_up(self):
        plan = plan_saving(training_plan(save_every_steps=100), async_save=True, snapshot_bytes=GB,
                           mirror_dir="/m", mirror_report=MirrorReport(Path("/m"), True, None, 0, 50e6))  # fmt: skip
        warning = [line for line in plan.lines() if line.startswith("⚠️")]
        assert plan.mirror_keeps_up is False and len(warning) == 1
        assert "saved every ~12.0 s, but a mirror copy takes ~20.0 s" in warning[0]
        assert "Raise SAVE_EVERY_STEPS to at least 167" in warning[0]

    def test_without_mid_epoch_saves_the_interval_is_an_epoch(self):
        plan = plan_saving(training_plan(save_every_steps=0, batches=50), async_save=True, snapshot_bytes=GB)
        assert plan.save_interval_s == 1.2 * 0.1 * 50

    def test_estimates_the_drive_trash_retention_creates(self):
        plan = plan_saving(training_plan(saves=10), async_save=True, snapshot_bytes=GB,
                           mirror_dir="/content/drive/MyDrive/ck", mirror_report=drive_mirror(checkpoints=2))  # fmt: skip
        assert plan.deleted_files == 9  # 2 there + 10 new - 3 kept
        trash = [line for line in plan.lines() if line.startswith("🗑️")][0]
        assert "retention will delete up to 9 checkpoint(s) (~8.4 GiB)" in trash
        assert "still count against your storage quota" in trash and "Empty trash" in trash

    def test_a_checkpoint_folder_on_drive_makes_trash_too(self):
        folder = FolderReport(Path("/content/drive/MyDrive/ck"), False, True, 10 * GB, 1, None)
        plan = plan_saving(training_plan(saves=4), async_save=False, snapshot_bytes=GB,
                           checkpoint_folder_report=folder, checkpoint_on_drive=True)  # fmt: skip
        assert (plan.trash_folder, plan.deleted_files) == ("/content/drive/MyDrive/ck", 2)

    def test_unknown_speed_gives_no_copy_time_and_no_warning(self):
        plan = plan_saving(training_plan(seconds_per_step=None), async_save=True, snapshot_bytes=GB, mirror_dir="/m",
                           mirror_report=MirrorReport(Path("/m"), False))  # fmt: skip
        assert plan.copy_s is None and plan.mirror_keeps_up is None and len(plan.lines()) == 1
