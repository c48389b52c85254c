"""Every state a disconnect can leave, tested the way it happens (issue 9, item 1).

A headless run of the notebook is killed (SIGKILL of its kernel, as a Colab runtime dies)
at each point: before its first save, after only mid-epoch saves, after an epoch-end save,
and in the middle of a save. Two more states are built directly: a folder holding only a
plain ``torch.save(model.state_dict())``, and one mixing the earlier cell's legacy files
with this notebook's. Then a fresh kernel runs Cells 1-13 and, for each state, Cells
33-35: each prints its panels and no traceback. Finally ``RESUME = "latest"`` (Cells 24,
25 and 32 with a fresh model, optimizer and schedule) continues to the planned step.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from nbclient.exceptions import DeadKernelError

from utils.model import GPT, config_for_preset
from utils.training.engine.naming import checkpoint_filename

from .kernel import Kernel

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

# 2 epochs of 5 batches, a mid-epoch save every 2 steps: the saves are (step 2, mid), (4, mid),
# (5, end of epoch 1), (6, mid), (8, mid), (10, end of epoch 2). Retention keeps 1 best + 2 latest.
RUN = dict(EPOCHS=2, MAX_BATCHES_PER_EPOCH=5, SAVE_EVERY_STEPS=2, KEEP_BEST=1, KEEP_LAST=2)
PLANNED_STEPS = 10
# state -> (engine function whose n-th call kills the kernel, n)
KILLS = {
    "before-the-first-save": ("write_checkpoint_file", 1),
    "after-mid-epoch-saves-only": ("write_checkpoint_file", 3),
    "after-an-epoch-end-save": ("write_checkpoint_file", 4),
    "inside-a-save": ("append_member", 4),  # the file is written under its temporary name, not renamed
}
KILL_HOOK = """
import os, signal
import utils.training.engine.checkpoint as _checkpoint
_real, _calls = getattr(_checkpoint, {name!r}), []
def _dying(*args, **kwargs):
    _calls.append(1)
    if len(_calls) == {at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(*args, **kwargs)
setattr(_checkpoint, {name!r}, _dying)
"""
RESUME_CELLS = (6, 13, 18, 19, 20, 24, 25, 32)
# What Cell 32 needs: set-up, data, model, optimizer, schedule, precision, resume source and state.
# The checks of Cells 14-17, 21-23 and 26-31 change nothing it uses (they cost a minute per run).
TRAINING_CELLS = (*range(1, 14), 18, 19, 20, 24, 25)


def _killed_run(folder: Path, name: str, at: int) -> None:
    """A headless run's training cells, then Cell 32 until the kernel is killed at the n-th call."""
    kernel = Kernel(**RUN, CHECKPOINT_DIR=str(folder), OUTPUT_DIR=str(folder.parent / f"{folder.name}-out"))
    try:
        for number in TRAINING_CELLS:
            kernel.run(number)
        kernel.code(KILL_HOOK.format(name=name, at=at))
        with pytest.raises(DeadKernelError):
            kernel.run(32)
    finally:
        kernel.close()


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("disconnect")
    folders = {}
    for state, (name, at) in KILLS.items():
        folders[state] = root / state
        _killed_run(folders[state], name, at)
    folders["bare-state-dict"] = root / "bare"
    folders["bare-state-dict"].mkdir()
    torch.manual_seed(3)
    torch.save(GPT(config_for_preset("tiny")).state_dict(), folders["bare-state-dict"] / "weights.pt")
    folders["old-and-new-files"] = shutil.copytree(folders["after-an-epoch-end-save"], root / "mixed")
    legacy = {  # as the notebook's earlier training cell wrote it: no format_version, no record
        "model_state_dict": GPT(config_for_preset("tiny")).state_dict(),
        "epoch": 0,
        "global_step": 3,
        "timestamp": "2025-11-22 06:00:03",
        "metrics": {"train_loss": 5.0, "val_loss": 4.9, "learning_rate": 1e-3},
    }
    torch.save(legacy, folders["old-and-new-files"] / checkpoint_filename(0, 3))
    return folders


def test_the_kills_left_the_states_they_aim_at(states):
    def names(state):
        return sorted(p.name for p in states[state].iterdir())

    assert [n for n in names("before-the-first-save") if not n.startswith(".")] == []
    assert all("_step00000" in n for n in names("after-mid-epoch-saves-only"))  # steps 2 and 4
    assert any(n.startswith(".checkpoint_") and ".tmp-" in n for n in names("inside-a-save"))


@pytest.fixture(scope="module")
def recovered(states) -> dict[str, dict[int, str]]:
    """One fresh kernel (a new runtime): Cells 1-13 once, then per state Cells 33-35 and a resume."""
    outputs = {}
    with Kernel(**RUN) as kernel:
        kernel.run_range(1, 13)
        for state, folder in states.items():
            kernel.code(f"CHECKPOINT_DIR, RESUME, RECOVERY_DIR = {str(folder)!r}, 'none', ''")
            found = {number: kernel.run(number) for number in (33, 34, 35)}
            kernel.code("RESUME = 'latest'")
            found.update({number: kernel.run(number) for number in RESUME_CELLS})
            found["step"] = kernel.code("print(run.global_step, run.epochs_completed)")
            outputs[state] = found
    return outputs


@pytest.mark.parametrize("state", [*KILLS, "bare-state-dict", "old-and-new-files"])
def test_recovery_cells_print_panels_and_resume_reaches_the_planned_step(recovered, state):
    found = recovered[state]
    for number, text in found.items():
        assert "Traceback" not in text and "Error:" not in text.split("❌")[0], f"Cell {number}:\n{text}"
    assert found["step"].split() == [str(PLANNED_STEPS), str(RUN["EPOCHS"])], found[32]
    if state == "before-the-first-save":
        assert "No checkpoints found in" in found[34] and "a NEW run starts" in found[24]
    else:
        assert "📂 Checkpoint folder:" in found[33] and "🏆 Best:" in found[33]
        assert "✅ Weights loaded successfully!" in found[34] and "NEXT STEPS" in found[34]
        assert "📦 Source:" in found[35]
    if state == "after-mid-epoch-saves-only":
        assert "no checkpoint has a validation loss yet" in found[33]
