"""The analysis benchmark runs end to end with a small model (its timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class TestBenchAnalysisQuick:
    @pytest.mark.slow
    def test_prints_every_measurement_and_ratio(self, tmp_path):
        folder = tmp_path / "files"
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_analysis.py"), "--quick", "--files", "3",
             "--folder", str(folder)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for line in (
            "files: 3 checkpoints (3 distinct files of",
            "time ratio layer_changes / read_weights:",
            "layer_changes extra peak private MB (RssAnon):",
            "layer_changes extra peak USS MB (Private_*, incl. mapped page cache):",
            "compare_checkpoints (3 files, 1 windows, 3 loads):",
        ):
            assert line in done.stdout
        assert not folder.exists()  # the files it wrote are removed
