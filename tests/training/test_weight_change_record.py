"""train() records each epoch's per-tensor weight change in the history, resumed runs included."""

from __future__ import annotations

import pytest
import torch

from utils.model import GPT, config_for_preset
from utils.training import restore_training_state, train
from utils.training.analysis import layer_changes
from utils.training.engine import format as fmt
from utils.training.engine.metadata import read_checkpoint_metadata
from utils.training.engine.naming import parse_checkpoint_filename


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, make_setup):
    """A 2-epoch run (5 batches each) with a checkpoint every 2 steps: (run, folder)."""
    folder = tmp_path_factory.mktemp("run")
    s = make_setup(save_every_steps=2)
    return train(*s.args(folder), progress=False), folder


def _at_step(run, step: int):
    return next(p for p in run.checkpoints if parse_checkpoint_filename(p).global_step == step)


def _resume(make_setup, path, folder):
    s = make_setup(save_every_steps=2)
    torch.manual_seed(99)  # another init: the resume must overwrite it
    s.model.load_state_dict(GPT(config_for_preset("tiny")).state_dict())
    state = restore_training_state(path, s.model, s.optimizer, s.scheduler)
    return train(*s.args(folder), resume_state=state, progress=False)


def _rounded(value):
    return None if value is None else float(f"{value:.4g}")


class TestTrainRecordsWeightChange:
    def test_every_row_has_every_parameter_and_layer(self, uninterrupted, make_setup):
        run, _ = uninterrupted
        names = [n for n, _ in make_setup().model.named_parameters()]
        for row in run.history:
            assert list(row[fmt.WEIGHT_CHANGE_KEY]) == names
            assert list(row[fmt.LAYER_CHANGE_KEY]) == ["embeddings", "block 0", "block 1", "final norm"]
            assert fmt.WEIGHT_CHANGE_FROM_STEP_KEY not in row

    def test_epoch_1_equals_layer_changes_between_the_epoch_end_files(self, uninterrupted):
        run, _ = uninterrupted
        changes = layer_changes([_at_step(run, 5), _at_step(run, 10)])
        recorded = run.history[1][fmt.WEIGHT_CHANGE_KEY]
        assert recorded == {name: _rounded(row[1]) for name, row in changes.table.items()}
        assert run.history[1][fmt.LAYER_CHANGE_KEY] == {
            k: _rounded(v[1]) for k, v in changes.by_layer().items()
        }

    def test_the_history_travels_in_the_json_record(self, uninterrupted):
        run, _ = uninterrupted
        record = read_checkpoint_metadata(run.checkpoints[-1])
        assert record.source == "record" and list(record.history) == run.history

    def test_resumed_mid_epoch_records_the_uninterrupted_numbers(self, uninterrupted, make_setup, tmp_path):
        run, _ = uninterrupted
        resumed = _resume(make_setup, _at_step(run, 8), tmp_path)  # epoch 1, batch 3; step 5's file exists
        assert resumed.history == run.history

    def test_without_the_epoch_start_file_it_measures_from_the_resume_step(
        self, uninterrupted, make_setup, tmp_path
    ):
        run, folder = uninterrupted
        copy = tmp_path / "alone" / _at_step(run, 8).name  # the resume file alone: no epoch-0 end beside it
        copy.parent.mkdir()
        copy.write_bytes(_at_step(run, 8).read_bytes())
        resumed = _resume(make_setup, copy, tmp_path / "ckpt")
        row = resumed.history[1]
        assert row[fmt.WEIGHT_CHANGE_FROM_STEP_KEY] == 8
        changes = layer_changes([copy, resumed.checkpoints[-1]])  # from step 8 to the epoch end
        assert row[fmt.WEIGHT_CHANGE_KEY] == {name: _rounded(v[1]) for name, v in changes.table.items()}
        assert resumed.history[0] == run.history[0]  # the restored epoch is kept as it was
