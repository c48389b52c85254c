"""The figures are written as PNG files, with any backend, from plain lists."""

from __future__ import annotations

import pytest

from utils.notebook.plots import (
    moving_average,
    plot_dashboard,
    plot_lr_schedule,
    plot_training_curves,
    show_png,
)

HISTORY = [
    {"epoch": i, "train_loss": 3.0 - i * 0.3, "val_loss": 2.9 - i * 0.2, "learning_rate": 1e-3}
    for i in range(4)
]
PNG_MAGIC = b"\x89PNG"


class TestMovingAverage:
    def test_centred_mean(self):
        assert moving_average([1, 2, 3, 4], 3) == [1.5, 2.0, 3.0, 3.5]
        assert moving_average([1, 2], 1) == [1.0, 2.0]

    def test_bad_window(self):
        with pytest.raises(ValueError, match="window"):
            moving_average([1.0], 0)


class TestPlotTrainingCurves:
    def test_writes_png(self, tmp_path):
        path = plot_training_curves(HISTORY, tmp_path / "sub" / "curves.png", best_epoch=3)
        assert path.read_bytes()[:4] == PNG_MAGIC

    def test_rows_without_val_loss_are_skipped(self, tmp_path):
        rows = [*HISTORY, {"epoch": 4, "train_loss": 1.0, "val_loss": None}]
        assert plot_training_curves(rows, tmp_path / "c.png").stat().st_size > 1000


class TestPlotLrSchedule:
    def test_writes_png(self, tmp_path):
        path = plot_lr_schedule([1e-3 * i / 10 for i in range(30)], tmp_path / "lr.png", steps_per_epoch=10)
        assert path.read_bytes()[:4] == PNG_MAGIC


class TestPlotDashboard:
    def test_with_and_without_step_losses(self, tmp_path):
        full = plot_dashboard(
            HISTORY, tmp_path / "a.png", step_losses=[3.0, 2.5, 2.0], learning_rates=[1e-3] * 3
        )
        bare = plot_dashboard(HISTORY, tmp_path / "b.png")
        assert full.read_bytes()[:4] == PNG_MAGIC and bare.read_bytes()[:4] == PNG_MAGIC


class TestShowPng:
    def test_outside_ipython_prints_the_path(self, tmp_path, capsys):
        show_png(tmp_path / "x.png")
        assert "x.png" in capsys.readouterr().out
