"""Runtime report, preset choice, Google Drive and seeds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from utils.notebook.runtime import resolve_preset, runtime_report, seed_everything, use_drive


class TestRuntimeReport:
    def test_reports_this_machine(self, tmp_path):
        report = runtime_report(tmp_path)
        text = "\n".join(report.lines())
        assert report.torch == torch.__version__ and report.cpu_count >= 1
        assert ("GPU: none" in text) == (not torch.cuda.is_available())


class TestResolvePreset:
    def test_auto_follows_the_device(self):
        assert resolve_preset("auto", torch.device("cuda"))[0] == "gpt2"
        assert resolve_preset("auto", torch.device("cpu"))[0] == "tiny"

    def test_explicit_preset_is_kept(self):
        assert resolve_preset("small-cpu", torch.device("cpu")) == ("small-cpu", "set in the parameters cell")


class TestUseDrive:
    def test_off_keeps_the_folders(self):
        choice = use_drive(False, "./ck", "./out", colab=True)
        assert (choice.checkpoint_dir, choice.on_drive, choice.mirror_dir) == ("./ck", False, None)
        assert "lost" in choice.message

    def test_outside_colab_says_so(self):
        choice = use_drive(True, "./ck", "./out", colab=False)
        assert not choice.on_drive and "not Colab" in choice.message

    def test_a_mirror_dir_works_without_drive(self):
        choice = use_drive(False, "./ck", "./out", mirror_dir=" /backup/ck ", colab=False)
        assert (choice.checkpoint_dir, choice.mirror_dir) == ("./ck", "/backup/ck")
        assert "also copied to /backup/ck in the background" in choice.message

    def test_in_colab_checkpoints_stay_local_and_drive_is_the_mirror(self, tmp_path):
        mounted = []
        choice = use_drive(True, "./checkpoints", "./outputs", "MyDrive/run", colab=True,
                           mount=mounted.append, drive_root=str(tmp_path))  # fmt: skip
        assert mounted == [str(tmp_path)] and choice.on_drive
        assert choice.checkpoint_dir == "./checkpoints"
        assert (
            choice.mirror_dir == str(tmp_path / "MyDrive/run/checkpoints")
            and Path(choice.mirror_dir).is_dir()
        )
        assert choice.output_dir == str(tmp_path / "MyDrive/run/outputs") and Path(choice.output_dir).is_dir()
        assert "written to the local disk first: ./checkpoints" in choice.message
        assert "survives a disconnect" in choice.message

    def test_an_explicit_mirror_dir_wins_over_the_drive_folder(self, tmp_path):
        choice = use_drive(True, "./ck", "./out", "MyDrive/run", mirror_dir=str(tmp_path / "elsewhere"),
                           colab=True, mount=lambda root: None, drive_root=str(tmp_path))  # fmt: skip
        assert choice.mirror_dir == str(tmp_path / "elsewhere")


class TestSeedEverything:
    def test_same_seed_same_numbers(self):
        seed_everything(7)
        first = (random.random(), torch.rand(1))
        seed_everything(7)
        assert first == (random.random(), torch.rand(1))

    def test_rejects_bad_seed(self):
        with pytest.raises(ValueError, match="SEED"):
            seed_everything(-1)
