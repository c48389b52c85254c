"""layer_changes: per-tensor relative change between files, equal to a direct computation."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from utils.training.analysis import layer_changes
from utils.training.engine.errors import ArchitectureMismatchError, CheckpointNotFoundError
from utils.training.engine.hf_export import export_hugging_face

from .conftest import TINY, save, tiny_model


def _direct(reference: dict, other: dict, name: str) -> float:
    delta = (other[name].double() - reference[name].double()).norm()
    return float(delta / reference[name].double().norm())


class TestLayerChanges:
    def test_relative_changes_equal_a_direct_computation(self, three_files):
        loaded = [torch.load(p, weights_only=True)["model_state_dict"] for p in three_files]
        result = layer_changes(three_files)
        assert result.reference == three_files[0] and result.paths == tuple(three_files)
        assert "lm_head.weight" not in result.table  # tied to transformer.wte.weight: listed once
        for name, row in result.table.items():
            assert row[0] == 0.0
            # float64 sums of float32 differences: equal to the float64 computation up to float32 rounding
            assert row[1:] == pytest.approx([_direct(loaded[0], loaded[i], name) for i in (1, 2)], rel=1e-6)

    def test_reference_outside_the_paths(self, three_files):
        result = layer_changes(three_files[1:], reference=three_files[0])
        full = layer_changes(three_files)
        assert all(result.table[name] == row[1:] for name, row in full.table.items())

    def test_all_zero_reference_tensor_has_no_ratio(self, tmp_path, model):
        with torch.no_grad():
            model.transformer.h[0].ln_1.bias.zero_()
            first = save(tmp_path, model, 0)
            model.transformer.h[0].ln_1.bias.add_(0.5)
            second = save(tmp_path, model, 1)
        row = layer_changes([first, second]).table["transformer.h.0.ln_1.bias"]
        assert row == [0.0, None]

    def test_by_layer_and_by_kind_take_each_group_as_one_vector(self, three_files):
        result = layer_changes(three_files)
        names = [n for n in result.table if ".h.1." in n]
        distance = sum(result.distances[n][2] ** 2 for n in names) ** 0.5
        norm = sum(result.reference_norms[n] ** 2 for n in names) ** 0.5
        assert result.by_layer()["block 1"][2] == pytest.approx(distance / norm)
        assert list(result.by_layer()) == ["embeddings", "block 0", "block 1", "final norm"]
        assert set(result.by_kind()) == {"attention", "MLP", "layer norms", "embeddings"}

    def test_top_is_sorted_largest_first(self, three_files):
        top = layer_changes(three_files).top(-1, 5)
        assert len(top) == 5 and [v for _, v in top] == sorted((v for _, v in top), reverse=True)

    def test_plot_writes_a_png_of_the_figures_size(self, three_files, tmp_path):
        png = layer_changes(three_files).plot(tmp_path / "out" / "changes.png", top=8)
        with Image.open(png) as image:
            width, height = image.size
        assert png.exists() and 1000 < width < 1600 and 600 < height < 1400

    def test_other_architecture_is_refused_before_any_arithmetic(self, tmp_path, three_files):
        other = save(tmp_path / "wide", tiny_model(), 0)
        bigger = tiny_model()
        bigger.transformer.h.append(copy.deepcopy(bigger.transformer.h[0]))  # a third block: extra tensors
        torch.save(bigger.state_dict(), tmp_path / "deeper.pt")
        with pytest.raises(ArchitectureMismatchError, match=r"deeper\.pt: has other weight tensors than the "
                           r"reference -- not in the reference: transformer\.h\.2\.ln_1\.weight"):  # fmt: skip
            layer_changes([three_files[0], other, tmp_path / "deeper.pt"])

    def test_other_kinds_of_checkpoint_read_under_the_models_names(self, tmp_path, model):
        ours = save(tmp_path / "ours", model, 0)
        state = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
        torch.save({"model": state, "model_args": dict(TINY), "iter_num": 5}, tmp_path / "ckpt.pt")  # nanoGPT
        export_hugging_face(model, tmp_path / "hf")  # transposed Conv1D weights, other names
        result = layer_changes([ours, tmp_path / "ckpt.pt", tmp_path / "hf"])
        assert len(result.table) == 28 and all(row == [0.0, 0.0, 0.0] for row in result.table.values())

    def test_missing_file(self, three_files, tmp_path):
        with pytest.raises(CheckpointNotFoundError, match="nothing.pt: does not exist"):
            layer_changes([three_files[0], tmp_path / "nothing.pt"])

    def test_no_paths(self):
        with pytest.raises(ValueError, match="needs at least one checkpoint path"):
            layer_changes([])
