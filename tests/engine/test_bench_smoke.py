"""The checkpoint benchmark runs end to end at tiny sizes (its timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestBenchCheckpointsQuick:
    def test_prints_the_three_ratios(self, tmp_path):
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_checkpoints.py"), "--quick", "--files", "5",
             "--repeats", "2", "--save-repeats", "1", "--workdir", str(tmp_path / "bench")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for line in ("(a) listing ratio:", "(b) per-checkpoint listing cost", "(c) atomic save / torch.save"):
            assert line in done.stdout
        assert "metadata source for the 10x file: record" in done.stdout
        assert not (tmp_path / "bench").exists()  # the benchmark cleans up after itself
