"""Cells 36 and 37's helpers: which files a setting names, what the cells read and print."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from utils.data import get_tokenizer
from utils.notebook.analysis_view import compare_checkpoints_cell, resolve_checkpoints, which_layers_cell
from utils.training.engine import format as fmt
from utils.training.engine.errors import NoCheckpointsError


def _names(folder) -> list[str]:
    """The fixture's files by epoch: [epoch 0, epoch 1 (best), epoch 2 (latest)]."""
    return sorted(p.name for p in folder.glob("*.pt"))


class TestResolveCheckpoints:
    def test_default_best_latest_earliest(self, checkpoint_dir):
        first, best, latest = _names(checkpoint_dir)
        choice = resolve_checkpoints("best, latest, earliest", checkpoint_dir)
        assert [p.name for p in choice.paths] == [best, latest, first] and choice.notes == []

    def test_repeats_are_listed_once_with_a_note(self, checkpoint_dir):
        first, _, latest = _names(checkpoint_dir)
        choice = resolve_checkpoints(["LATEST", latest, "all"], checkpoint_dir)
        assert [p.name for p in choice.paths] == [latest, first, _names(checkpoint_dir)[1]]
        assert choice.notes[0] == f"{latest} = #1 ({latest}): listed once"

    def test_file_names_and_paths(self, checkpoint_dir):
        first = _names(checkpoint_dir)[0]
        choice = resolve_checkpoints(f"{first}, {checkpoint_dir / first}", checkpoint_dir)
        assert choice.paths == [checkpoint_dir / first]

    def test_unknown_name(self, checkpoint_dir):
        with pytest.raises(
            ValueError, match=r"'newest' is neither a checkpoint file nor one of best, latest"
        ):
            resolve_checkpoints("best, newest", checkpoint_dir)

    def test_empty_setting(self, checkpoint_dir):
        with pytest.raises(ValueError, match="no checkpoint named"):
            resolve_checkpoints(" , ", checkpoint_dir)

    def test_keyword_in_an_empty_folder(self, tmp_path):
        with pytest.raises(NoCheckpointsError, match="holds no checkpoint"):
            resolve_checkpoints("best", tmp_path)


class TestCompareCheckpointsCell:
    def test_prints_the_table_and_leaves_the_model(self, checkpoint_dir, tiny_model, val_batches):
        before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
        namespace = dict(model=tiny_model, val_batches=val_batches, tokenizer=get_tokenizer("bytes"), SEED=1,
                         CHECKPOINT_DIR=str(checkpoint_dir))  # fmt: skip
        printed = []
        report = compare_checkpoints_cell(
            namespace, "best, latest", prompt="To", max_new_tokens=5, out=printed.append
        )
        text = "\n".join(printed)
        assert len(report.rows) == 2 and report.seed == 1 and report.rows[0].sample.startswith("To")
        assert "comparing 2 checkpoint(s) named by 'best, latest'" in text and "top-1 agree" in text
        assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())

    def test_missing_model_says_which_cells_to_run(self, checkpoint_dir):
        printed = []
        assert (
            compare_checkpoints_cell({"CHECKPOINT_DIR": str(checkpoint_dir)}, "best", out=printed.append)
            is None
        )
        assert printed == ["❌ Missing `model` (Cell 13) and `val_batches` (Cell 12): run Cells 1-13 first "
                           "(after a disconnect, then Cell 33)"]  # fmt: skip

    def test_a_bad_setting_prints_the_error(self, checkpoint_dir, tiny_model, val_batches):
        printed = []
        namespace = dict(model=tiny_model, val_batches=val_batches, CHECKPOINT_DIR=str(checkpoint_dir))
        assert compare_checkpoints_cell(namespace, "bestt", out=printed.append) is None
        assert printed[-1].startswith("❌ 'bestt' is neither a checkpoint file")


class TestWhichLayersCell:
    def _history(self) -> list[dict]:
        return [
            {"epoch": e, fmt.LAYER_CHANGE_KEY: {"embeddings": 0.2 / (e + 1), "block 0": 0.1}}
            for e in range(3)
        ]

    def test_heatmap_and_bars_from_the_reference_to_the_loaded_file(self, checkpoint_dir, tmp_path):
        first, best, _ = _names(checkpoint_dir)
        namespace = dict(CHECKPOINT_DIR=str(checkpoint_dir), results={"history": self._history()},
                         load_report=SimpleNamespace(path=str(checkpoint_dir / best)))  # fmt: skip
        printed = []
        png, changes = which_layers_cell(namespace, tmp_path / "out", out=printed.append)
        text = "\n".join(printed)
        assert png == tmp_path / "out" / "layer_changes.png" and png.stat().st_size > 10_000
        assert [p.name for p in changes.paths] == [first, best]
        assert "🧭 Epoch 2 moved most: block 0 0.1, embeddings 0.0667" in text
        assert f"🏷️  {best} against {first}: top transformer.wte.weight" in text

    def test_checkpoints_without_a_record_still_get_the_bars(self, checkpoint_dir, tmp_path):
        printed = []
        png, changes = which_layers_cell(
            {"CHECKPOINT_DIR": str(checkpoint_dir)}, tmp_path, out=printed.append
        )
        assert png.exists() and changes is not None
        assert any("has no per-layer record" in line for line in printed)

    def test_reference_equal_to_the_loaded_file(self, checkpoint_dir, tmp_path):
        first = _names(checkpoint_dir)[0]
        namespace = dict(CHECKPOINT_DIR=str(checkpoint_dir), results={"history": self._history()},
                         load_report=SimpleNamespace(path=str(checkpoint_dir / first)))  # fmt: skip
        printed = []
        png, changes = which_layers_cell(namespace, tmp_path, out=printed.append)
        assert changes is None and png.exists()
        expected = f"ℹ️  The reference is the loaded checkpoint ({first}): set REFERENCE to another one"
        assert printed[0] == expected

    def test_nothing_to_draw(self, tmp_path):
        printed = []
        assert which_layers_cell({"CHECKPOINT_DIR": str(tmp_path)}, tmp_path, out=printed.append) == (
            None,
            None,
        )
        assert printed[-1].startswith("❌ Nothing to draw")
