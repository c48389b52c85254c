"""What a benchmark's process holds in memory, read from Linux's /proc (one copy for every script).

Imported by the benchmark scripts, which run with ``benchmarks/`` first on ``sys.path``.
"""

from __future__ import annotations

import threading

__all__ = ["AnonPeakSampler", "smaps_mb", "status_mb"]


def status_mb(field: str) -> float:
    """One field of ``/proc/self/status`` (``RssAnon``, ``RssFile``, ...) in MB; NaN when absent."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def smaps_mb(*fields: str) -> float:
    """The sum of fields of ``/proc/self/smaps_rollup`` (``Private_Dirty``, ...) in MB; NaN when absent."""
    found, total = False, 0
    with open("/proc/self/smaps_rollup") as handle:
        for line in handle:
            if line.startswith(tuple(f"{field}:" for field in fields)):
                found, total = True, total + int(line.split()[1])
    return total / 1024 if found else float("nan")


class AnonPeakSampler(threading.Thread):
    """The peak of ``RssAnon`` (private memory) while it runs, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.001) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = status_mb("RssAnon")
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.peak = max(self.peak, status_mb("RssAnon"))
