"""Resume in one process (the notebook's RESUME) from a sharded (FSDP) checkpoint folder."""

from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import save
from tests.engine.sharded_helpers import write_sharded
from utils.model import GPT, config_for_preset
from utils.training import describe_changes, resolve_resume_source, restore_training_state, train
from utils.training.distributed.context import DistributedContext
from utils.training.distributed.sharded_save import save_sharded_checkpoint
from utils.training.engine import format as fmt
from utils.training.engine.errors import NoCheckpointsError, ResumeError
from utils.training.resume import ResumeState, restore_run_parts


@pytest.fixture(scope="module")
def run_and_folder(tmp_path_factory, make_setup):
    """A finished 2-epoch run, and its epoch-0 checkpoint rewritten as a sharded folder."""
    folder = tmp_path_factory.mktemp("run")
    torch.set_num_threads(1)  # as in the tests (the one_thread fixture starts after this one): same kernels
    s = make_setup()
    run = train(*s.args(folder / "files"), progress=False)
    saved = torch.load(run.checkpoints[0], weights_only=True)
    s = make_setup()
    s.model.load_state_dict(saved[fmt.MODEL_STATE_KEY])
    s.optimizer.load_state_dict(saved[fmt.OPTIMIZER_STATE_KEY])
    s.scheduler.load_state_dict(saved[fmt.SCHEDULER_STATE_KEY])
    parts = {key: saved[key] for key in ("epoch", "global_step", "metrics", "history", "config", "rng_state",
                                         "data_state", "step_losses")}  # fmt: skip
    sharded = save_sharded_checkpoint(
        DistributedContext(strategy="fsdp"), folder / "sharded", s.model, s.optimizer,
        scheduler=s.scheduler, retention=None, **parts,
    )  # fmt: skip
    return run, sharded


def _fresh(make_setup):
    s = make_setup()
    torch.manual_seed(99)  # another init: restoring must overwrite it
    s.model.load_state_dict(GPT(config_for_preset("tiny")).state_dict())
    return s


class TestResolveResumeSourceWithFolders:
    def test_a_sharded_checkpoint_folder_is_a_source(self, run_and_folder):
        _, sharded = run_and_folder
        assert resolve_resume_source(str(sharded), sharded.parent) == sharded

    def test_latest_is_the_highest_step_file_or_folder(self, tmp_path):
        save(tmp_path, epoch=0, step=4)
        folder = write_sharded(tmp_path, epoch=1, step=6)
        assert resolve_resume_source("latest", tmp_path) == folder
        newest_file = save(tmp_path, epoch=2, step=8)
        assert resolve_resume_source("latest", tmp_path) == newest_file

    def test_an_unfinished_folder_is_never_latest(self, tmp_path):
        (write_sharded(tmp_path, step=9) / fmt.METADATA_RECORD).unlink()
        with pytest.raises(NoCheckpointsError, match="holds no valid checkpoint"):
            resolve_resume_source("latest", tmp_path)

    def test_any_other_folder_is_still_refused(self, tmp_path):
        with pytest.raises(ResumeError, match="RESUME names a folder"):
            resolve_resume_source(str(tmp_path), tmp_path)


class TestRestoreTrainingStateFromAFolder:
    def test_the_resumed_run_ends_as_the_uninterrupted_one(self, run_and_folder, make_setup, tmp_path):
        run, sharded = run_and_folder
        s = _fresh(make_setup)
        state = restore_training_state(sharded, s.model, s.optimizer, s.scheduler)
        assert state.exact and (state.epoch, state.batch_in_epoch) == (1, 0)
        resumed = train(*s.args(tmp_path), resume_state=state, progress=False)
        assert resumed.step_losses == run.step_losses and resumed.history == run.history


class TestRestoreRunParts:
    def test_everything_but_weights_and_optimizer(self, run_and_folder, make_setup):
        run, _ = run_and_folder
        saved = torch.load(run.checkpoints[0], weights_only=True)
        s = make_setup()
        state = ResumeState(checkpoint_path=run.checkpoints[0], kind="full")
        restore_run_parts(run.checkpoints[0], saved, state, s.optimizer, s.scheduler, None)
        assert state.global_step == 5 and s.scheduler.last_epoch == 5 and state.training_config["seed"] == 3
        assert not any("weights" in line or "optimizer" in line for line in state.restored)


class TestDescribeChangesWithProcesses:
    def test_another_number_of_processes_is_named(self, run_and_folder, make_setup):
        _, sharded = run_and_folder
        s = _fresh(make_setup)
        state = restore_training_state(sharded, s.model, s.optimizer, s.scheduler)
        state.data_state = {**state.data_state, "world_size": 2}
        lines = "\n".join(describe_changes(state, s.config, s.batches, s.scheduler))
        assert "written by 2 process(es), this run has 1" in lines
