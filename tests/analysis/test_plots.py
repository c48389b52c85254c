"""The layer-change figures: what they draw (axes, labels, bars), read from the Figure itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from utils.training.analysis import layer_changes
from utils.training.analysis.plots import (
    DPI,
    history_heatmap_data,
    layer_changes_figure,
    save_figure,
    which_layers_figure,
)
from utils.training.engine import format as fmt

LAYERS = ["embeddings", "block 0", "block 1", "final norm"]


def _history(epochs: int = 3, partial_epoch: int | None = None) -> list[dict]:
    rows = []
    for epoch in range(epochs):
        row = {"epoch": epoch, "val_loss": 3.0, fmt.LAYER_CHANGE_KEY: {k: 0.1 / (epoch + 1) for k in LAYERS}}
        if epoch == partial_epoch:
            row[fmt.WEIGHT_CHANGE_FROM_STEP_KEY] = 13
        rows.append(row)
    return [{"epoch": -1, "val_loss": 9.0}] + rows  # an older row without a record is skipped


def _labels(ax, axis: str) -> list[str]:
    return [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()]


class TestHistoryHeatmapData:
    def test_layers_epochs_values_and_partial_epochs(self):
        layers, epochs, values, partial = history_heatmap_data(_history(partial_epoch=2))
        assert layers == LAYERS and epochs == [0, 1, 2] and partial == [2]
        assert values.shape == (4, 3) and values[0, 1] == pytest.approx(0.05)

    def test_missing_and_undefined_values_are_nan(self):
        history = [{"epoch": 0, fmt.LAYER_CHANGE_KEY: {"block 0": None, "embeddings": 0.2}}]
        _, _, values, _ = history_heatmap_data(history)
        assert math.isnan(values[1, 0]) and values[0, 0] == 0.2


class TestWhichLayersFigure:
    def test_heatmap_rows_are_layers_columns_epochs_and_bars_the_top_tensors(self, three_files):
        fig = which_layers_figure(_history(partial_epoch=2), layer_changes(three_files[::2]), top=6)
        heat, kinds, bars = fig.axes[0], fig.axes[2], fig.axes[3]  # axes[1] is the colour bar
        assert _labels(heat, "y") == LAYERS and _labels(heat, "x") == ["0", "1", "2*"]
        assert heat.get_xlabel().startswith("epoch (0-based") and "resume step" in heat.get_title()
        assert len(bars.patches) == 6 and bars.get_title().startswith("Top 6 of 28 tensors: epoch 2, step 30")
        widths = [p.get_width() for p in bars.patches]
        assert widths == sorted(widths, reverse=True)
        assert set(_labels(kinds, "y")) == {"attention", "MLP", "layer norms", "embeddings"}
        assert fig._suptitle.get_text() == "Which layers changed"

    def test_history_alone_and_files_alone(self, three_files):
        assert len(which_layers_figure(_history()).axes) == 2  # heatmap and its colour bar
        assert len(which_layers_figure([], layer_changes(three_files[:2])).axes) == 2  # the two bar charts

    def test_nothing_to_draw(self):
        with pytest.raises(ValueError, match="nothing to draw"):
            which_layers_figure([{"epoch": 0, "val_loss": 1.0}])

    def test_saved_png_has_the_figures_size(self, tmp_path):
        fig = which_layers_figure(_history())
        png = save_figure(fig, tmp_path / "deep" / "layers.png")
        with Image.open(png) as image:
            width, height = image.size
        expected_width = fig.get_figwidth() * DPI
        assert abs(width - expected_width) < 0.15 * expected_width and height > 200


class TestLayerChangesFigure:
    def test_one_heatmap_column_per_file_reference_marked(self, three_files):
        fig = layer_changes_figure(layer_changes(three_files), top=4)
        heat = fig.axes[0]
        assert _labels(heat, "x")[0] == "epoch 0\nstep 10\n(ref)" and len(_labels(heat, "x")) == 3
        assert _labels(heat, "y") == LAYERS
        image = heat.get_images()[0].get_array()
        assert np.ma.is_masked(image[0, 0]) and image[0, 2] > image[0, 1] > 0  # reference blank; grows
