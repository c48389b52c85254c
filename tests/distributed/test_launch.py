"""The command line: flags generated from TrainConfig, and one process training what the notebook trains."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from utils.data import EpochBatches, get_tokenizer, load_corpus, split_tokens, validation_batches
from utils.model import GPT, config_for_preset
from utils.notebook.runtime import seed_everything
from utils.training import build_grad_scaler, build_optimizer, build_scheduler, train
from utils.training.launch import build_parser, main, train_config_from_args
from utils.training.settings import TrainConfig

FLAGS = ["--preset", "tiny", "--epochs", "1", "--max-batches-per-epoch", "2", "--eval-batches", "1",
         "--batch-size", "4", "--device", "cpu", "--mixed-precision", "off", "--seed", "5"]  # fmt: skip


class TestBuildParser:
    def test_every_train_config_field_is_a_flag_with_its_default(self):
        args = build_parser().parse_args([])
        for field in dataclasses.fields(TrainConfig):
            assert getattr(args, field.name) == getattr(TrainConfig(), field.name), field.name

    def test_booleans_and_no_limit(self):
        args = build_parser().parse_args(
            ["--stop-on-save-error", "--max-batches-per-epoch", "0", "--eval-batches", "none"]
        )
        assert (
            args.stop_on_save_error is True
            and args.max_batches_per_epoch is None
            and args.eval_batches is None
        )

    def test_a_bad_number_is_refused_by_the_parser(self, capsys):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--stop-after-epochs", "two"])
        assert "expected an integer, or 0 / none for no limit" in capsys.readouterr().err


class TestTrainConfigFromArgs:
    def test_values_reach_the_config(self):
        config = train_config_from_args(
            build_parser().parse_args(["--batch-size", "3", "--learning-rate", "0.01"])
        )
        assert (config.batch_size, config.learning_rate) == (3, 0.01)

    def test_out_of_range_is_trainconfigs_error(self):
        with pytest.raises(ValueError, match="TrainConfig.keep_last must be >= 1"):
            train_config_from_args(build_parser().parse_args(["--keep-last", "0"]))


class TestMain:
    def test_one_process_trains_exactly_what_the_notebook_trains(self, tmp_path, capsys):
        assert main([*FLAGS, "--checkpoint-dir", str(tmp_path / "cli")]) == 0
        assert "1 process(es), strategy ddp" in capsys.readouterr().out
        ours = torch.load(next((tmp_path / "cli").glob("*.pt")), weights_only=True)
        notebook = torch.load(next(_notebook_run(tmp_path / "nb").glob("*.pt")), weights_only=True)
        assert torch.equal(ours["step_losses"], notebook["step_losses"])
        assert all(
            torch.equal(ours["model_state_dict"][k], v) for k, v in notebook["model_state_dict"].items()
        )
        assert "world_size" not in ours["data_state"]  # the one-process format is unchanged

    def test_a_resume_path_that_does_not_exist(self, tmp_path, capsys):
        assert main([*FLAGS, "--checkpoint-dir", str(tmp_path), "--resume", str(tmp_path / "gone.pt")]) == 2
        assert "does not exist" in capsys.readouterr().err


def _notebook_run(folder):
    """Cells 7-13, 18-20 and 32 of the notebook with the same settings."""
    config = TrainConfig(epochs=1, batch_size=4, max_batches_per_epoch=2, eval_batches=1, device="cpu",
                         mixed_precision="off", seed=5)  # fmt: skip
    tokenizer, model_config = get_tokenizer("bytes"), config_for_preset("tiny")
    train_tokens, val_tokens = split_tokens(tokenizer.encode(load_corpus(None)), 0.1)
    batches = EpochBatches(train_tokens, 4, model_config.block_size, 5, 2)
    val = validation_batches(val_tokens, 4, model_config.block_size, 1)
    seed_everything(5)
    model = GPT(model_config)
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = build_scheduler(optimizer, config.warmup_steps, len(batches), config.min_lr_ratio)
    train(model, optimizer, scheduler, batches, val, config, folder, scaler=build_grad_scaler("off", torch.device("cpu")),
          progress=False, model_config=model_config)  # fmt: skip
    return folder
