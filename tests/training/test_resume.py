"""resolve_resume_source and restore_training_state: choosing the file, restoring, saying what is missing."""

from __future__ import annotations

import pytest
import torch

from utils.model import GPT, config_for_preset
from utils.training import describe_changes, resolve_resume_source, restore_training_state, train
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.errors import (
    ArchitectureMismatchError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NoCheckpointsError,
    NotACheckpointError,
    ResumeError,
)
from utils.training.engine.naming import checkpoint_filename


@pytest.fixture(scope="module")
def finished(tmp_path_factory, make_setup):
    """A finished 2-epoch run with mid-epoch checkpoints every 2 steps: (run, folder)."""
    folder = tmp_path_factory.mktemp("run")
    s = make_setup(save_every_steps=2)
    return train(*s.args(folder), progress=False), folder


def _fresh(make_setup, **overrides):
    s = make_setup(**overrides)
    torch.manual_seed(99)  # a different init: restoring must overwrite it
    s.model.load_state_dict(GPT(config_for_preset("tiny")).state_dict())
    return s


def _legacy_file(folder, run, setup) -> str:
    """A checkpoint as the notebook's earlier training cell wrote it (no format_version)."""
    checkpoint = torch.load(run.checkpoints[2], weights_only=True)  # epoch 0 end, step 5
    legacy = {k: checkpoint[k] for k in ("model_state_dict", "optimizer_state_dict", "epoch", "global_step",
                                         "timestamp", "metrics")}  # fmt: skip
    path = folder / checkpoint_filename(0, 5)
    torch.save(legacy, path)
    return path


class TestResolveResumeSource:
    @pytest.mark.parametrize("value", [None, "", "none", " None "])
    def test_none_starts_fresh(self, value, tmp_path):
        assert resolve_resume_source(value, tmp_path) is None

    def test_latest_is_the_highest_step(self, finished):
        run, folder = finished
        assert resolve_resume_source("latest", folder) == run.checkpoints[-1]

    def test_latest_in_an_empty_folder_says_so(self, tmp_path):
        with pytest.raises(
            NoCheckpointsError, match=r"(?s)RESUME='latest'.*no valid checkpoint.*RESUME='none'"
        ):
            resolve_resume_source("latest", tmp_path)

    def test_latest_in_a_missing_folder_says_so(self, tmp_path):
        with pytest.raises(NoCheckpointsError, match="folder does not exist"):
            resolve_resume_source("latest", tmp_path / "gone")

    def test_missing_path(self, tmp_path):
        with pytest.raises(
            CheckpointNotFoundError, match=r"(?s)nope\.pt: RESUME names a file that does not exist"
        ):
            resolve_resume_source(str(tmp_path / "nope.pt"), tmp_path)

    def test_a_bare_name_is_looked_up_in_the_checkpoint_folder(self, finished):
        run, folder = finished
        assert resolve_resume_source(run.checkpoints[0].name, folder) == folder / run.checkpoints[0].name

    def test_a_bare_name_in_a_home_relative_folder(self, tmp_path, monkeypatch):
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.chdir(tmp_path)  # "ck.pt" must not be found relative to the working folder
        (tmp_path / "runs").mkdir()
        (tmp_path / "runs" / "ck.pt").write_bytes(b"x")
        assert resolve_resume_source("ck.pt", "~/runs") == tmp_path / "runs" / "ck.pt"

    def test_a_folder_is_refused_with_the_fix(self, tmp_path):
        with pytest.raises(ResumeError, match="RESUME='latest'"):
            resolve_resume_source(str(tmp_path), tmp_path)


class TestRestoreTrainingState:
    def test_full_checkpoint_mid_epoch(self, finished, make_setup):
        run, _ = finished
        s = _fresh(make_setup)
        state = restore_training_state(run.checkpoints[3], s.model, s.optimizer, s.scheduler)  # step 6
        assert (state.epoch, state.batch_in_epoch, state.global_step) == (1, 1, 6)
        assert state.exact and state.step_losses == run.step_losses[:6] and len(state.history) == 1
        assert s.scheduler.last_epoch == 6 and len(s.optimizer.state) > 0

    def test_epoch_end_checkpoint_continues_at_the_next_epoch(self, finished, make_setup):
        run, _ = finished
        s = _fresh(make_setup)
        state = restore_training_state(run.checkpoints[2], s.model, s.optimizer, s.scheduler)  # step 5
        assert (state.epoch, state.batch_in_epoch) == (1, 0)

    def test_resumed_run_equals_the_uninterrupted_one(self, finished, make_setup, tmp_path):
        run, _ = finished
        s = _fresh(make_setup, save_every_steps=2)
        state = restore_training_state(run.checkpoints[3], s.model, s.optimizer, s.scheduler)
        resumed = train(*s.args(tmp_path), resume_state=state, progress=False)
        assert resumed.step_losses == run.step_losses and resumed.history == run.history

    def test_without_rng_state_the_run_differs_and_says_so(self, finished, make_setup, tmp_path):
        run, _ = finished
        checkpoint = torch.load(run.checkpoints[3], weights_only=True)
        del checkpoint["rng_state"]
        torch.save(checkpoint, tmp_path / "no_rng.pt")
        s = _fresh(make_setup)
        state = restore_training_state(tmp_path / "no_rng.pt", s.model, s.optimizer, s.scheduler)
        assert not state.exact and "dropout" in state.missing[0]
        resumed = train(*s.args(tmp_path / "ckpt"), resume_state=state, progress=False)
        assert (
            resumed.step_losses[:6] == run.step_losses[:6] and resumed.step_losses[6:] != run.step_losses[6:]
        )

    def test_weights_only_file_lists_what_is_missing(self, finished, make_setup, tmp_path):
        run, _ = finished
        torch.save({"module." + k: v for k, v in torch.load(run.checkpoints[-1], weights_only=True)[
            "model_state_dict"].items()}, tmp_path / "weights.pt")  # fmt: skip
        s = _fresh(make_setup)
        state = restore_training_state(tmp_path / "weights.pt", s.model, s.optimizer, s.scheduler)
        text = state.render()
        assert state.kind == "bare" and (state.epoch, state.global_step) == (0, 0)
        assert "optimizer state: not in the file" in text and "weights-only file" in text
        assert "LR scheduler: not in the file" in text and "'module.'" in text

    def test_legacy_file_resumes_at_the_next_epoch_and_lists_gaps(self, finished, make_setup, tmp_path):
        run, _ = finished
        s = _fresh(make_setup)
        state = restore_training_state(_legacy_file(tmp_path, run, s), s.model, s.optimizer, s.scheduler)
        assert state.kind == "legacy" and (state.epoch, state.batch_in_epoch, state.global_step) == (1, 0, 5)
        missing = "\n".join(state.missing)
        assert "random generators" in missing and "data position" in missing and "per-step losses" in missing
        assert "set to step 5 of the current schedule" in missing and s.scheduler.last_epoch == 5

    def test_not_a_checkpoint(self, make_setup, tmp_path):
        torch.save([1, 2, 3], tmp_path / "list.pt")
        s = make_setup()
        with pytest.raises(NotACheckpointError, match="holds a list, not model weights"):
            restore_training_state(tmp_path / "list.pt", s.model, s.optimizer)

    def test_architecture_mismatch_leaves_the_model_unchanged(self, finished, tmp_path):
        run, _ = finished
        model = GPT(config_for_preset("tiny", n_layer=3))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(
            ArchitectureMismatchError, match=r"(?s)do not fit the model.*n_layer: checkpoint 2, model 3"
        ):
            restore_training_state(run.checkpoints[-1], model, None)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    def test_architecture_mismatch_names_the_config_differences(self, finished):
        run, _ = finished
        model = GPT(config_for_preset("tiny", n_layer=3))
        with pytest.raises(
            ArchitectureMismatchError, match=r"(?s)Config differences:.*n_layer: checkpoint 2, model 3"
        ):
            restore_training_state(run.checkpoints[-1], model, None)

    def test_model_with_a_real_module_submodule_resumes(self, tmp_path):
        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.module = torch.nn.Linear(3, 2)  # a real submodule, not a DataParallel wrapper

        source, target = Wrap(), Wrap()
        path = save_checkpoint(tmp_path, source, epoch=0, global_step=1, metrics=None, retention=None)
        state = restore_training_state(path, target, None)
        assert torch.equal(target.module.weight, source.module.weight)
        assert not any("prefix" in note for note in state.notes)

    @pytest.mark.parametrize(
        "part, broken",
        [("rng_state", {"torch": torch.zeros(3, dtype=torch.uint8)}), ("scheduler_state_dict", {"x": 1})],
    )
    def test_a_part_failing_late_leaves_everything_as_it_was(
        self, finished, make_setup, tmp_path, part, broken
    ):
        run, _ = finished
        checkpoint = torch.load(run.checkpoints[3], weights_only=True)
        checkpoint[part] = broken  # the right type, wrong contents: only restoring it can tell
        torch.save(checkpoint, tmp_path / "bad.pt")
        s = _fresh(make_setup)
        weights = {k: v.clone() for k, v in s.model.state_dict().items()}
        optimizer, scheduler = s.optimizer.state_dict(), s.scheduler.state_dict()
        generator = torch.get_rng_state()
        with pytest.raises(ResumeError, match="bad.pt"):
            restore_training_state(tmp_path / "bad.pt", s.model, s.optimizer, s.scheduler)
        assert all(torch.equal(weights[k], v) for k, v in s.model.state_dict().items())
        assert s.optimizer.state_dict() == optimizer and s.scheduler.state_dict() == scheduler
        assert torch.equal(torch.get_rng_state(), generator)

    def test_weights_damaged_after_the_save_are_refused_before_anything_changes(
        self, finished, make_setup, tmp_path
    ):
        run, _ = finished
        data = bytearray(run.checkpoints[3].read_bytes())
        weight = torch.load(run.checkpoints[3], weights_only=True)["model_state_dict"][
            "transformer.wpe.weight"
        ]
        data[data.find(weight.numpy().tobytes()) + 100] ^= 0xFF  # torch.load alone reads it without complaint
        (tmp_path / "rot.pt").write_bytes(bytes(data))
        s = _fresh(make_setup)
        weights, optimizer = {k: v.clone() for k, v in s.model.state_dict().items()}, s.optimizer.state_dict()
        with pytest.raises(CorruptCheckpointError, match=r"(?s)rot\.pt.*CRC-32.*transformer\.wpe\.weight"):
            restore_training_state(tmp_path / "rot.pt", s.model, s.optimizer, s.scheduler)
        assert all(torch.equal(weights[k], v) for k, v in s.model.state_dict().items())
        assert s.optimizer.state_dict() == optimizer

    def test_render_names_the_file_and_the_position(self, finished, make_setup):
        run, _ = finished
        s = _fresh(make_setup)
        text = restore_training_state(run.checkpoints[3], s.model, s.optimizer, s.scheduler).render()
        assert run.checkpoints[3].name in text and "epoch 2, batch 2" in text and "Complete state" in text


class TestDescribeChanges:
    def test_changed_settings_are_named(self, finished, make_setup):
        run, _ = finished
        s = _fresh(make_setup)
        state = restore_training_state(run.checkpoints[3], s.model, s.optimizer, s.scheduler)
        s.config.learning_rate, s.config.epochs = 1e-2, 4
        lines = "\n".join(describe_changes(state, s.config, s.batches, s.scheduler))
        assert "learning_rate changed since the checkpoint: 0.003 -> 0.01" in lines
        assert "plans 10 steps" in lines and "gives 20" in lines

    def test_nothing_changed(self, finished, make_setup):
        run, _ = finished
        s = _fresh(make_setup)
        state = restore_training_state(run.checkpoints[3], s.model, s.optimizer, s.scheduler)
        assert describe_changes(state, s.config, s.batches, s.scheduler) == []
