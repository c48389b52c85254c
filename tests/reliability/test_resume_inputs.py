"""Regression tests for the resume inputs the fuzzer found: malformed parts of an otherwise valid file.

Each once escaped ``restore_training_state`` as a raw TypeError / KeyError / AttributeError,
some after the weights had been copied. Now: ResumeError naming the file and the part, and
nothing changed; or, where the value is merely absent (None), a normal resume.
"""

from __future__ import annotations

import pytest
import torch

from utils.training import build_optimizer, build_scheduler, restore_training_state
from utils.training.engine.errors import ArchitectureMismatchError, ResumeError

from .mutations import make_base, micro_model, with_record

MALFORMED = {
    "data_state-not-a-dict": ("data_state", [1, 2, 3]),
    "data_state-missing-fields": ("data_state", {"epoch": 0}),
    "data_state-fields-not-int": ("data_state", {"epoch": "0", "batch_in_epoch": 1, "batches_per_epoch": 4}),
    "global_step-a-tuple": ("global_step", (1, 2)),
    "epoch-infinite": ("epoch", float("inf")),
    "history-of-numbers": ("history", [1, 2]),
    "step_losses-2d": ("step_losses", torch.zeros(2, 2)),
    "optimizer-state-a-tuple": ("optimizer_state_dict", (1,)),
    "scheduler-state-without-lambdas": ("scheduler_state_dict", {"last_epoch": 3}),
    "rng_state-a-list": ("rng_state", [1]),
    "config-training-a-list": ("config", {"training": [1]}),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("resume-base"))


def _resume(path):
    model = micro_model()
    optimizer = build_optimizer(model, 1e-3, 0.1)
    scheduler = build_scheduler(optimizer, 2, 100)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    return model, before, lambda: restore_training_state(path, model, optimizer, scheduler)


class TestRestoreTrainingStateOnMalformedParts:
    @pytest.mark.parametrize("name", MALFORMED)
    def test_raises_resume_error_naming_the_file(self, base, tmp_path, name):
        key, value = MALFORMED[name]
        path = tmp_path / "checkpoint.pt"
        path.write_bytes(with_record({**base.checkpoint, key: value}, None))
        model, before, resume = _resume(path)
        with pytest.raises(ResumeError) as caught:
            resume()
        assert str(path) in str(caught.value) and caught.value.fix
        if "malformed" in caught.value.problem:  # found before anything was changed
            assert all(torch.equal(model.state_dict()[n], t) for n, t in before.items())

    @pytest.mark.parametrize("key", ["epoch", "global_step"])
    def test_a_missing_counter_resumes_from_zero(self, base, tmp_path, key):
        path = tmp_path / "checkpoint.pt"
        path.write_bytes(with_record({**base.checkpoint, key: None}, None))
        state = _resume(path)[2]()
        # no data position in this file: it continues after the epoch it names (None: epoch 0)
        assert state.kind == "full" and (state.global_step == 0 if key == "global_step" else state.epoch == 1)

    def test_non_string_weight_names_are_a_mismatch(self, base, tmp_path):
        weights = dict(enumerate(base.checkpoint["model_state_dict"].values()))
        path = tmp_path / "checkpoint.pt"
        path.write_bytes(with_record({**base.checkpoint, "model_state_dict": weights}, None))
        model, before, resume = _resume(path)
        with pytest.raises(ArchitectureMismatchError):
            resume()
        assert all(torch.equal(model.state_dict()[n], t) for n, t in before.items())
