"""train() and evaluate() on the tiny preset: learning, checkpoints, history, failures."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from utils.training import TrainConfig, evaluate, train
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.naming import parse_checkpoint_filename


def _steps(paths) -> list[int]:
    return [parse_checkpoint_filename(p).global_step for p in paths]


class TestTrain:
    def test_loss_decreases(self, tmp_path, make_setup):
        s = make_setup(epochs=3, max_batches_per_epoch=8)
        run = train(*s.args(tmp_path), progress=False)
        assert run.val_losses[-1] < run.val_losses[0] - 0.3
        assert sum(run.step_losses[-4:]) < sum(run.step_losses[:4])

    def test_history_and_counters(self, setup, tmp_path):
        run = train(*setup.args(tmp_path), progress=False)
        assert [row["epoch"] for row in run.history] == [0, 1]
        assert [row["global_step"] for row in run.history] == [5, 10]
        assert run.global_step == len(run.step_losses) == 10 and run.epochs_completed == 2
        assert run.history[0]["train_loss"] == pytest.approx(sum(run.step_losses[:5]) / 5)

    def test_checkpoint_at_each_epoch_end_named_by_epoch_and_step(self, setup, tmp_path):
        run = train(*setup.args(tmp_path), progress=False)
        assert _steps(run.checkpoints) == [5, 10]
        assert [parse_checkpoint_filename(p).epoch for p in run.checkpoints] == [0, 1]
        assert run.best_checkpoint == min(
            run.checkpoints, key=lambda p: run.val_losses[run.checkpoints.index(p)]
        )

    def test_best_checkpoint_is_this_runs_not_the_folders(self, setup, tmp_path):
        foreign = save_checkpoint(
            tmp_path, setup.model, None, epoch=0, global_step=1, retention=None,
            metrics={"train_loss": 0.01, "val_loss": 0.01, "learning_rate": 1e-3},
        )  # fmt: skip
        run = train(*setup.args(tmp_path), progress=False)
        assert foreign.exists() and run.best_checkpoint != foreign
        assert run.best_checkpoint == run.checkpoints[run.val_losses.index(run.best_val_loss)]

    def test_best_checkpoint_is_none_when_this_run_kept_no_file(self, setup, tmp_path, monkeypatch):
        save_checkpoint(tmp_path, setup.model, None, epoch=0, global_step=1, metrics={"val_loss": 0.01})
        monkeypatch.setattr("utils.training.loop_saves.save_checkpoint", _failing_save)
        assert train(*setup.args(tmp_path), progress=False).best_checkpoint is None

    def test_dataclass_model_config_without_to_dict_is_stored(self, setup, tmp_path):
        run = train(*setup.args(tmp_path), progress=False, model_config=_PlainConfig())
        assert torch.load(run.checkpoints[-1], weights_only=True)["config"]["model"] == {"n_layer": 2}

    def test_unusable_model_config_is_rejected(self, setup, tmp_path):
        with pytest.raises(
            TypeError, match="model_config must be a GPTConfig, a dataclass or a mapping, got int"
        ):
            train(*setup.args(tmp_path), progress=False, model_config=42)

    def test_mid_epoch_checkpoints(self, tmp_path, make_setup):
        s = make_setup(save_every_steps=2)
        run = train(*s.args(tmp_path), progress=False)
        assert _steps(run.checkpoints) == [2, 4, 5, 6, 8, 10]

    def test_checkpoint_holds_everything_for_resume(self, setup, tmp_path):
        run = train(*setup.args(tmp_path), progress=False)
        saved = torch.load(run.checkpoints[-1], weights_only=True)
        assert saved["data_state"] == {"epoch": 1, "batch_in_epoch": 5, "batches_per_epoch": 5, "seed": 3}
        assert (
            saved["step_losses"].dtype == torch.float64 and saved["step_losses"].tolist() == run.step_losses
        )
        assert {"rng_state", "scheduler_state_dict", "optimizer_state_dict"} <= set(saved)
        assert saved["config"]["model"]["n_layer"] == 2 and saved["config"]["training"]["batch_size"] == 4

    def test_progress_bar_prints_readable_text(self, setup, tmp_path, capsys):
        train(*setup.args(tmp_path), progress=True)
        out = capsys.readouterr().out
        assert "Epoch 1/2: 100%" in out and "5/5" in out  # the bar's final state
        assert (
            "Epoch 2/2 | step 10 | train_loss " in out and "| saved checkpoint_epoch0001_step000010_" in out
        )

    def test_stop_after_epochs_ends_the_session_early(self, tmp_path, make_setup):
        s = make_setup(epochs=4, stop_after_epochs=1)
        run = train(*s.args(tmp_path), progress=False)
        assert run.epochs_completed == 1 and run.global_step == 5

    def test_batch_size_must_match_the_batches(self, setup, tmp_path):
        setup.config.batch_size = 8
        with pytest.raises(ValueError, match="batch_size=4 but config.batch_size=8"):
            train(*setup.args(tmp_path), progress=False)

    def test_failed_save_warns_and_training_continues(self, setup, tmp_path, monkeypatch, capsys):
        monkeypatch.setattr("utils.training.loop_saves.save_checkpoint", _failing_save)
        run = train(*setup.args(tmp_path), progress=False)
        out = capsys.readouterr().out
        assert run.epochs_completed == 2 and len(run.save_failures) == 2 and run.checkpoints == []
        assert "CHECKPOINT NOT SAVED (epoch 1, step 5)" in out and "No space left" in out
        assert "Training continues" in out and "free disk space" in out

    def test_failed_save_can_stop_the_run(self, tmp_path, make_setup, monkeypatch, capsys):
        s = make_setup(stop_on_save_error=True)
        monkeypatch.setattr("utils.training.loop_saves.save_checkpoint", _failing_save)
        run = train(*s.args(tmp_path), progress=False)
        assert run.epochs_completed == 1 and run.stop_reason.startswith("checkpoint save failed")
        assert "Training stopped" in capsys.readouterr().out

    def test_unusable_checkpoint_folder_fails_before_training(self, setup, tmp_path):
        (tmp_path / "file").write_text("x")
        with pytest.raises(CheckpointSaveError, match="cannot create the checkpoint folder"):
            train(*setup.args(tmp_path / "file" / "ckpt"), progress=False)


@dataclass
class _PlainConfig:
    n_layer: int = 2


def _failing_save(folder, *args, **kwargs):
    raise CheckpointSaveError(folder, "[Errno 28] No space left on device", fix="free disk space")


class TestEvaluate:
    def test_deterministic_restores_mode_and_uses_no_rng(self, setup):
        setup.model.train()
        before = torch.get_rng_state()
        first, second = evaluate(setup.model, setup.val), evaluate(setup.model, setup.val)
        assert first == second and setup.model.training
        assert torch.equal(torch.get_rng_state(), before)

    def test_empty_batches(self, setup):
        with pytest.raises(ValueError, match="at least one validation batch"):
            evaluate(setup.model, [])


class TestTrainConfig:
    def test_rejects_zero_epochs(self):
        with pytest.raises(ValueError, match="epochs must be >= 1"):
            TrainConfig(epochs=0)

    def test_rejects_unknown_precision(self):
        with pytest.raises(ValueError, match="mixed_precision"):
            TrainConfig(mixed_precision="fp8")
