"""The sources benchmark runs end to end with a small model (its timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class TestBenchSourcesQuick:
    @pytest.mark.slow
    def test_prints_both_loads_the_ratios_and_the_listing(self, tmp_path):
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_sources.py"), "--quick", "--repeats", "1",
             "--dir", str(tmp_path / "bench")],
            capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for line in ("ours: save_checkpoint file", "hf: save_pretrained folder", "ratio hf / ours:",
                     "extra private MB [hf]:", "listing 20 mixed entries"):  # fmt: skip
            assert line in done.stdout
        assert "0 skipped" in done.stdout
        assert not (tmp_path / "bench" / "quick").exists()  # its gigabytes (for GPT-2) are removed
