"""train() with background saves and a mirror: same checkpoints, in order, failures reported, nothing pending."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
import torch

import utils.training.engine.checkpoint as checkpoint_module
from utils.data import EpochBatches
from utils.training import TrainConfig, train
from utils.training.distributed.context import DistributedContext
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.naming import parse_checkpoint_filename
from utils.training.engine.recovery import list_checkpoints

REAL_WRITE = checkpoint_module.write_checkpoint_file


def _steps(paths) -> list[int]:
    return [parse_checkpoint_filename(p).global_step for p in paths]


def _final(path) -> dict:
    return torch.load(path, weights_only=True)


def _patch_write(monkeypatch, *, fail_at: int | None = None, delay=lambda: 0.0, log: list | None = None):
    """Replace the engine's one file writer (which the background thread calls): fail, slow down, log."""

    def write(path, checkpoint, *, tensor_count=None):
        time.sleep(delay())
        if parse_checkpoint_filename(path).global_step == fail_at:
            raise CheckpointSaveError(path.parent, f"could not save {path.name}: injected I/O error")
        written = REAL_WRITE(path, checkpoint, tensor_count=tensor_count)
        if log is not None:
            log.append(parse_checkpoint_filename(path).global_step)
        return written

    monkeypatch.setattr(checkpoint_module, "write_checkpoint_file", write)


class TestTrainWithBackgroundSaves:
    def test_same_checkpoints_as_blocking_saves(self, tmp_path, make_setup):
        blocking = train(*make_setup(save_every_steps=2).args(tmp_path / "sync"), progress=False)
        background = train(
            *make_setup(save_every_steps=2, async_save=True).args(tmp_path / "async"), progress=False
        )
        assert _steps(background.checkpoints) == _steps(blocking.checkpoints) == [2, 4, 5, 6, 8, 10]
        for one, other in zip(blocking.checkpoints, background.checkpoints, strict=True):
            a, b = _final(one), _final(other)
            assert all(
                torch.equal(a["model_state_dict"][k], b["model_state_dict"][k]) for k in a["model_state_dict"]
            )
            assert a["history"] == b["history"] and torch.equal(a["step_losses"], b["step_losses"])
            moments = [s["exp_avg"] for s in a["optimizer_state_dict"]["state"].values()]
            assert all(
                torch.equal(m, n["exp_avg"])
                for m, n in zip(moments, b["optimizer_state_dict"]["state"].values(), strict=True)
            )
        assert background.history == blocking.history

    def test_saves_complete_in_the_order_of_the_steps(self, tmp_path, make_setup, monkeypatch):
        completed, rng = [], random.Random(0)
        _patch_write(monkeypatch, delay=lambda: rng.uniform(0, 0.05), log=completed)
        run = train(*make_setup(save_every_steps=1, async_save=True).args(tmp_path), progress=False)
        assert completed == list(range(1, 11)) and _steps(run.checkpoints) == completed

    def test_a_slow_disk_makes_the_next_save_wait_and_says_so(
        self, tmp_path, make_setup, monkeypatch, capsys
    ):
        _patch_write(monkeypatch, delay=lambda: 0.3)
        run = train(*make_setup(save_every_steps=1, async_save=True).args(tmp_path), progress=False)
        out = capsys.readouterr().out
        assert (
            "⏳ waited " in out and "s for the previous checkpoint (checkpoint_epoch0000_step000001_" in out
        )
        assert run.save_wait_s > 0 and _steps(run.checkpoints) == list(range(1, 11))

    def test_a_failed_background_save_is_reported_at_the_next_step_and_at_the_end(
        self, tmp_path, make_setup, monkeypatch, capsys
    ):
        _patch_write(monkeypatch, fail_at=4)
        run = train(*make_setup(save_every_steps=2, async_save=True).args(tmp_path), progress=False)
        out = capsys.readouterr().out
        assert run.global_step == 10 and _steps(run.checkpoints) == [2, 5, 6, 8, 10]
        assert len(run.save_failures) == 1 and run.save_failures[0].startswith("epoch 1, step 4: ")
        report = out.index("CHECKPOINT NOT SAVED (epoch 1, step 4)")
        assert report < out.index("Epoch 1/2 | step 5")  # reported during the epoch, not only at the end
        assert "injected I/O error" in out and "Training continues" in out
        assert "mid-epoch checkpoints at step(s) 2 (" in out  # the failed one is not claimed
        assert "1 checkpoint save(s) failed" in out
        assert sorted(info.global_step for info in list_checkpoints(tmp_path)) == [2, 5, 6, 8, 10]

    def test_stop_on_save_error_stops_soon_after_a_failed_background_save(
        self, tmp_path, make_setup, monkeypatch, capsys
    ):
        _patch_write(monkeypatch, fail_at=4)
        run = train(
            *make_setup(save_every_steps=2, async_save=True, stop_on_save_error=True).args(tmp_path),
            progress=False,
        )
        out = capsys.readouterr().out
        assert run.stop_reason == "checkpoint save failed at epoch 1, step 4" and 4 < run.global_step < 10
        assert "Training stopped: checkpoint save failed at epoch 1, step 4" in out
        assert max(_steps(run.checkpoints)) == 2

    def test_the_end_of_training_waits_for_the_last_save(self, tmp_path, make_setup, monkeypatch, capsys):
        _patch_write(monkeypatch, delay=lambda: 0.5)
        run = train(*make_setup(async_save=True).args(tmp_path), progress=False)
        assert (
            "⏳ Waiting for the last checkpoint (checkpoint_epoch0001_step000010_" in capsys.readouterr().out
        )
        assert run.checkpoints[-1].exists() and run.best_checkpoint is not None

    def test_an_interrupt_waits_for_the_save_in_flight(self, tmp_path, make_setup, monkeypatch):
        _patch_write(monkeypatch, delay=lambda: 0.5)
        s = make_setup(async_save=True, save_every_steps=3)
        s.batches = _InterruptAt(s.batches, epoch=0, index=4)
        run = train(*s.args(tmp_path), progress=False)
        assert run.interrupted and run.global_step == 4
        assert _steps(run.checkpoints) == [3] and run.checkpoints[0].exists()


class _InterruptAt(EpochBatches):
    """The real batches, with a KeyboardInterrupt (the user's stop button) at one of them."""

    def __init__(self, batches: EpochBatches, *, epoch: int, index: int) -> None:
        self.__dict__.update(batches.__dict__)
        self._stop = (epoch, index)

    def batch(self, epoch, index):
        if (epoch, index) == self._stop:
            raise KeyboardInterrupt
        return super().batch(epoch, index)


class TestTrainWithAMirror:
    def test_the_mirror_holds_byte_identical_copies_of_the_kept_checkpoints(
        self, tmp_path, make_setup, capsys
    ):
        s = make_setup(
            save_every_steps=2, async_save=True, keep_best=1, keep_last=2, mirror_dir=str(tmp_path / "m")
        )
        run = train(*s.args(tmp_path / "local"), progress=False)
        local = sorted(os.listdir(tmp_path / "local"))
        assert sorted(os.listdir(tmp_path / "m")) == local and len(local) >= 2
        assert all((tmp_path / "m" / n).read_bytes() == (tmp_path / "local" / n).read_bytes() for n in local)
        assert run.mirror.up_to_date and len(run.mirror.copied) == 6 and run.mirror.failures == ()
        assert f"☁️  Mirror {tmp_path / 'm'}: 6 file(s) copied and verified" in capsys.readouterr().out

    def test_works_with_blocking_saves_too(self, tmp_path, make_setup):
        s = make_setup(mirror_dir=str(tmp_path / "m"))
        run = train(*s.args(tmp_path / "local"), progress=False)
        assert sorted(os.listdir(tmp_path / "m")) == sorted(p.name for p in run.checkpoints)

    def test_a_failing_mirror_is_reported_and_training_goes_on(self, tmp_path, make_setup, capsys):
        (tmp_path / "m").write_text("not a folder")  # every copy fails, as on an unmounted Drive
        s = make_setup(async_save=True, mirror_dir=str(tmp_path / "m"))
        run = train(*s.args(tmp_path / "local"), progress=False)
        out = capsys.readouterr().out
        assert run.global_step == 10 and _steps(run.checkpoints) == [5, 10] and run.save_failures == []
        assert (
            "MIRROR COPY FAILED (checkpoint_epoch0000_step000005_" in out and f"-> {tmp_path / 'm'})" in out
        )
        assert "the local file is complete" in out
        assert {f.name for f in run.mirror.failures} == {p.name for p in run.checkpoints}
        assert "The local files are complete; the mirror lacks these copies" in out

    def test_the_mirror_may_not_be_the_checkpoint_folder(self, tmp_path, make_setup):
        s = make_setup(mirror_dir=str(tmp_path / "ckpt"))
        with pytest.raises(
            ValueError, match="is the checkpoint folder itself: a mirror must be another folder"
        ):
            train(*s.args(tmp_path / "ckpt"), progress=False)


class TestTrainConfigSaving:
    def test_defaults_keep_saves_blocking_and_without_mirror(self):
        config = TrainConfig()
        assert (config.async_save, config.mirror_dir) == (False, None)

    def test_async_save_must_be_a_boolean(self):
        with pytest.raises(ValueError, match="async_save must be True or False, got 1"):
            TrainConfig(async_save=1)

    def test_mirror_dir_must_be_a_path_or_none(self):
        with pytest.raises(
            ValueError, match="mirror_dir must be a folder path, or None for no mirror, got ''"
        ):
            TrainConfig(mirror_dir="")

    def test_a_path_object_is_stored_as_text(self, tmp_path):
        assert TrainConfig(mirror_dir=tmp_path).mirror_dir == str(tmp_path)


@pytest.mark.parametrize("settings", [dict(async_save=True), dict(mirror_dir="m")])
def test_with_several_processes_background_saves_and_the_mirror_are_refused(tmp_path, make_setup, settings):
    with pytest.raises(ValueError, match="are for one process: with several processes every rank"):
        train(*make_setup(**settings).args(tmp_path / "l"), progress=False,
              distributed=DistributedContext(world_size=2, strategy="ddp", has_group=True))  # fmt: skip
    assert not (tmp_path / "l").exists() or not list((tmp_path / "l").iterdir())


def test_no_thread_is_left_running_after_train(tmp_path, make_setup):
    train(*make_setup(async_save=True, mirror_dir=str(tmp_path / "m")).args(tmp_path / "l"), progress=False)
    assert not [
        t for t in threading.enumerate() if t.name.startswith(("checkpoint-writer", "checkpoint-mirror"))
    ]
