"""The background-save benchmark runs end to end at tiny sizes (its timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestBenchAsyncSaveQuick:
    def test_prints_the_three_ratios_and_cleans_up(self, tmp_path):
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_async_save.py"), "--quick",
             "--workdir", str(tmp_path / "bench")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "(a) blocked by a background save / synchronous save = " in done.stdout
        assert "save every 1 step(s): " in done.stdout and "save every 2 step(s): " in done.stdout
        assert "(b) " in done.stdout
        assert not (tmp_path / "bench").exists()
