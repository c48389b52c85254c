"""The loading benchmark runs end to end with a small model (its timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class TestBenchLoadingQuick:
    @pytest.mark.slow
    def test_prints_every_variant_and_ratio(self, tmp_path):
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_loading.py"), "--quick", "--repeats", "1",
             "--file", str(tmp_path / "quick.pt")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for line in (
            "design (weights_only=False)",
            "load_model_weights(verify=False)",
            "load_model_weights(verify=True)",
            "floor (mmap load + copy)",
            "speedup vs design [ours_verify]:",
            "ratio vs floor [ours_verify]:",
            "extra peak private MB [ours_verify]:",
            "render panels:",
            "rest of Cell 34 (listing, selection, checksums, verification, panels):",
        ):
            assert line in done.stdout
        assert not (tmp_path / "quick.pt").exists()  # the file it wrote is removed
