"""Training under torchrun (2 processes, gloo, CPU) with DDP and FSDP2, stopped, killed and resumed.

One module-scoped fixture runs everything once, in the order the scenario needs (starting
processes costs more than these tiny runs, so one torchrun start serves several jobs):

1. torchrun: for DDP and FSDP each, an uninterrupted run of 2 epochs and a run stopped
   after epoch 1 (``--stop-after-epochs 1``);
2. one process: resume those checkpoints with 1 process (DDP file and FSDP folder, each
   into DDP and into FSDP), and a 1-process FSDP run stopped after epoch 1;
3. torchrun: resume the FSDP run while rank 1 is SIGKILLed inside the sharded save;
4. torchrun: resume both stopped runs with 2 processes (the FSDP one after the kill), and
   the 1-process FSDP run with 2 processes;
5. torchrun: the real CLI (``-m utils.training.launch``), FSDP with mid-epoch saves and
   retention of folders;
6. a notebook kernel: Cells 33, 34 and RESUME on the folders of the 2-process FSDP run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from utils.model import GPT, config_for_preset
from utils.training.engine.loading import load_model_weights
from utils.training.engine.naming import is_temporary_file, parse_checkpoint_foldername
from utils.training.engine.sharded_folder import RECORD_NAME, rank_file_name
from utils.training.engine.sources.sharded import read_sharded_training_state

from ..notebook.kernel import Kernel
from .runs import (
    FAST,
    TORCHRUN,
    checkpoint_weights,
    different,
    job,
    listed_folders,
    loaded,
    one_process_jobs,
    result,
    run,
    torchrun_jobs,
)

STOP = ("--stop-after-epochs", "1")


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("torchrun")
    ck = out / "ck"
    torchrun_jobs(
        out,
        job("ddp_full", "ddp", ck / "ddp_full"), job("ddp_stopped", "ddp", ck / "ddp", *STOP),
        job("fsdp_full", "fsdp", ck / "fsdp_full"), job("fsdp_stopped", "fsdp", ck / "fsdp", *STOP),
    )  # fmt: skip
    ddp_file = sorted((ck / "ddp").glob("checkpoint_*.pt"))[0]
    fsdp_folder = listed_folders(ck / "fsdp")[0]
    # The 1-process resumes read the stopped runs' checkpoints from copies (each writes its own).
    copies = {name: _copy(ck / source, ck / name) for name, source in
              [("ddp_one", "ddp"), ("ddp_into_fsdp", "ddp"), ("fsdp_one", "fsdp"), ("fsdp_into_ddp", "fsdp")]}  # fmt: skip
    one_process_jobs(
        out,
        job("fsdp_one", "fsdp", copies["fsdp_one"], "--resume", "latest"),
        job("ddp_into_fsdp", "fsdp", copies["ddp_into_fsdp"], "--resume", "latest"),
        job("ddp_one", "ddp", copies["ddp_one"], "--resume", "latest"),
        job("fsdp_into_ddp", "ddp", copies["fsdp_into_ddp"], "--resume", "latest"),
        job("one_stopped", "fsdp", ck / "one", *STOP),
    )  # fmt: skip
    one_folder = listed_folders(ck / "one")[0]
    killed = torchrun_jobs(
        out,
        job("fsdp_killed", "fsdp", ck / "fsdp", "--resume", "latest"),
        env={"KILL_IN_SAVE": "1:1"},
        check=False,
    )
    after_kill = sorted(path.name for path in (ck / "fsdp").iterdir())
    torchrun_jobs(
        out,
        job("fsdp_resumed", "fsdp", ck / "fsdp", "--resume", "latest"),
        job("ddp_resumed", "ddp", ck / "ddp", "--resume", "latest"),
        job("one_to_two", "fsdp", ck / "one", "--resume", "latest"),
    )
    return {"out": out, "ck": ck, "ddp_file": ddp_file, "fsdp_folder": fsdp_folder, "one_folder": one_folder,
            "killed": killed, "after_kill": after_kill}  # fmt: skip


@pytest.mark.slow
class TestTwoProcessRuns:
    @pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
    def test_two_epochs_with_losses_averaged_over_the_ranks(self, runs, strategy):
        full = result(runs["out"], f"{strategy}_full")
        assert full["epochs_completed"] == 2
        assert len(full["step_losses"]) == 6  # 3 steps per epoch: each process reads its half of the epoch
        assert [row["epoch"] for row in full["history"]] == [0, 1]

    def test_ddp_writes_one_file_per_save(self, runs):
        names = sorted(path.name for path in (runs["ck"] / "ddp_full").iterdir())
        assert [name.endswith(".pt") for name in names] == [True, True]

    def test_fsdp_writes_one_committed_folder_per_save_with_every_ranks_part(self, runs):
        folders = listed_folders(runs["ck"] / "fsdp_full")
        assert [parse_checkpoint_foldername(f).global_step for f in folders] == [3, 6]
        for folder in folders:
            names = {path.name for path in folder.iterdir()}
            assert {RECORD_NAME, ".metadata", rank_file_name(0), rank_file_name(1)} <= names
            assert len([n for n in names if n.endswith(".distcp")]) == 2  # each rank its shards


@pytest.mark.slow
class TestResumeWithTwoProcesses:
    @pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
    def test_stopped_and_resumed_run_ends_bit_identical_to_the_uninterrupted_one(self, runs, strategy):
        full, resumed = result(runs["out"], f"{strategy}_full"), result(runs["out"], f"{strategy}_resumed")
        assert "Complete state" in resumed["report"]
        assert resumed["step_losses"] == full["step_losses"]
        assert resumed["history"] == full["history"]
        assert different(resumed["model"], full["model"]) == []

    def test_one_process_fsdp_checkpoint_resumes_with_two(self, runs):
        assert different(loaded(runs["out"], "one_to_two"), checkpoint_weights(runs["one_folder"])) == []
        resumed = result(runs["out"], "one_to_two")
        assert resumed["epochs_completed"] == 2
        assert "written by 1 process(es), resumed with 2" in resumed["report"]


@pytest.mark.slow
class TestResumeWithOneProcess:
    @pytest.mark.parametrize(
        ("name", "source"),
        [("ddp_one", "ddp_file"), ("ddp_into_fsdp", "ddp_file"), ("fsdp_one", "fsdp_folder"),
         ("fsdp_into_ddp", "fsdp_folder")],
    )  # fmt: skip
    def test_loads_the_checkpoints_weights_and_completes(self, runs, name, source):
        assert different(loaded(runs["out"], name), checkpoint_weights(runs[source])) == []
        resumed = result(runs["out"], name)
        assert resumed["epochs_completed"] == 2
        assert "written by 2 process(es), resumed with 1" in resumed["report"]  # what is not exact, said


@pytest.mark.slow
class TestKillDuringShardedSave:
    def test_the_kill_happened_inside_the_save(self, runs):
        assert runs["killed"].returncode != 0
        assert [name for name in runs["after_kill"] if is_temporary_file(name)], runs["after_kill"]

    def test_previous_checkpoint_stays_listed_and_no_half_folder_is(self, runs):
        committed = [name for name in runs["after_kill"] if not is_temporary_file(name)]
        assert committed == [runs["fsdp_folder"].name]

    def test_previous_checkpoint_still_loads_in_one_process(self, runs):
        assert read_sharded_training_state(runs["fsdp_folder"])["global_step"] == 3
        model = GPT(config_for_preset("tiny"))
        assert load_model_weights(model, runs["fsdp_folder"], "cpu").verified
        assert different(model.state_dict(), checkpoint_weights(runs["fsdp_folder"])) == []

    def test_the_next_save_removes_the_leftover(self, runs):
        assert not [path for path in (runs["ck"] / "fsdp").iterdir() if is_temporary_file(path.name)]


@pytest.mark.slow
class TestCommandLine:
    def test_fsdp_run_with_mid_epoch_saves_keeps_the_retained_folders_only(self, tmp_path):
        flags = [*FAST, "--strategy", "fsdp", "--checkpoint-dir", str(tmp_path), "--save-every-steps", "2",
                 "--keep-last", "2", "--keep-best", "1"]  # fmt: skip
        done = run([*TORCHRUN, "-m", "utils.training.launch", *flags])
        assert done.stdout.count("Epoch 2/2 | step 6") == 1  # only rank 0 prints
        steps = [parse_checkpoint_foldername(f).global_step for f in listed_folders(tmp_path)]
        assert 6 in steps and len(steps) <= 3  # the newest two and the best one
        assert not [path for path in tmp_path.iterdir() if is_temporary_file(path.name)]


@pytest.fixture(scope="module")
def kernel(runs, tmp_path_factory):
    """A notebook kernel after Cells 1-25 on a copy of the 2-process FSDP run, RESUME="latest", EPOCHS=3."""
    folder = _copy(runs["ck"] / "fsdp_full", tmp_path_factory.mktemp("nb") / "ck")
    with Kernel(EPOCHS=3, CHECKPOINT_DIR=str(folder), OUTPUT_DIR=str(folder.parent / "out"),
                RESUME="latest", KEEP_LAST=10) as kernel:  # fmt: skip
        kernel.folder = folder
        kernel.outputs = kernel.run_range(1, 25)
        yield kernel


@pytest.mark.slow
@pytest.mark.notebook
class TestNotebookReadsFsdpFolders:
    """A run written by 2 FSDP processes, in the notebook (one process, no process group)."""

    def test_cell_33_lists_the_folders_and_recovers_their_history(self, kernel):
        text = kernel.run(33)
        assert text.count("checkpoint_epoch000") >= 2 and "Traceback" not in text
        history = kernel.code("print([row['epoch'] for row in results['history']])")
        assert history.strip() == "[0, 1]"

    def test_cell_34_loads_a_folder_into_the_one_process_model(self, kernel, runs):
        text = kernel.run(34)
        assert "✅ Weights loaded successfully!" in text and "Traceback" not in text
        kernel.code("import torch; torch.save({k: v.cpu() for k, v in model.state_dict().items()}, 'loaded.pt')"
                    .replace("'loaded.pt'", repr(str(kernel.folder.parent / "loaded.pt"))))  # fmt: skip
        loaded = torch.load(kernel.folder.parent / "loaded.pt", weights_only=True)
        chosen = re.search(r"📂 Loading checkpoint: (\S+)", text)[1]
        assert different(loaded, checkpoint_weights(kernel.folder / chosen)) == []

    def test_resume_continues_the_torchrun_run_in_one_process(self, kernel):
        assert (
            "sharded checkpoint" in kernel.outputs[25]
            and "RESUMING from checkpoint_epoch0001" in kernel.outputs[25]
        )
        text = kernel.run(32)
        assert "Epoch 3/3" in text and "Traceback" not in text
