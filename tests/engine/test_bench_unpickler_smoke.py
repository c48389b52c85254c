"""The unpickler benchmark runs end to end on a small model (its timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestBenchUnpicklerQuick:
    def test_prints_both_ratios(self, tmp_path):
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_unpickler.py"), "--quick", "--repeats", "2",
             "--workdir", str(tmp_path / "bench")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for line in ("ours / torch weights_only:", "ours / C pickle:", "tensors (tiny)"):
            assert line in done.stdout
        assert not (tmp_path / "bench").exists()  # the benchmark cleans up after itself
