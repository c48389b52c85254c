"""Cell 12: Cell 3's form settings become the one TrainConfig the run uses and stores."""

from __future__ import annotations

import pytest

from utils.notebook.train_settings import SETTING_NAMES, train_config_from

FORM = dict(
    EPOCHS=7, BATCH_SIZE=6, LEARNING_RATE=2e-4, WEIGHT_DECAY=0.05, WARMUP_STEPS=11, MIN_LR_RATIO=0.3,
    MAX_BATCHES_PER_EPOCH=40, EVAL_BATCHES=9, SAVE_EVERY_STEPS=25, KEEP_BEST=2, KEEP_LAST=3, SEED=5,
    MIXED_PRECISION="off", EPOCHS_THIS_SESSION=2, ASYNC_SAVE=True, MIRROR_DIR="/mnt/mirror",
)  # fmt: skip


class TestTrainConfigFrom:
    def test_every_form_setting_reaches_its_field(self):
        config = train_config_from(FORM, "cpu")
        assert {field: getattr(config, field) for field in SETTING_NAMES} == {
            field: FORM[name] for field, name in SETTING_NAMES.items()
        }
        assert config.device == "cpu"

    def test_zero_means_no_limit(self):
        config = train_config_from(
            {**FORM, "MAX_BATCHES_PER_EPOCH": 0, "EVAL_BATCHES": 0, "EPOCHS_THIS_SESSION": 0}, "cpu"
        )
        assert (config.max_batches_per_epoch, config.eval_batches, config.stop_after_epochs) == (
            None,
            None,
            None,
        )

    def test_empty_mirror_dir_means_no_mirror(self):
        assert train_config_from({**FORM, "MIRROR_DIR": "  "}, "cpu").mirror_dir is None
        assert train_config_from({**FORM, "MIRROR_DIR": ""}, "cpu").mirror_dir is None

    def test_async_save_must_be_a_boolean(self):
        with pytest.raises(ValueError, match="async_save must be True or False, got 'yes'"):
            train_config_from({**FORM, "ASYNC_SAVE": "yes"}, "cpu")

    def test_missing_setting_names_cell_3(self):
        settings = {k: v for k, v in FORM.items() if k != "MIN_LR_RATIO"}
        with pytest.raises(NameError, match="MIN_LR_RATIO are not defined: run Cell 3"):
            train_config_from(settings, "cpu")

    def test_bad_value_is_rejected_by_train_config(self):
        with pytest.raises(ValueError, match="min_lr_ratio"):
            train_config_from({**FORM, "MIN_LR_RATIO": 2.0}, "cpu")

    def test_init_from_is_recorded_and_scratch_when_absent(self):
        assert train_config_from({**FORM, "INIT_FROM": " gpt2 "}, "cpu").init_from == "gpt2"
        assert train_config_from(FORM, "cpu").init_from == "scratch"
