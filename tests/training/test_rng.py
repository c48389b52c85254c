"""capture_rng_state / restore_rng_state: every generator, weights_only-safe, loud reports."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from utils.training.engine.errors import ResumeError
from utils.training.rng import capture_rng_state, restore_rng_state


def _draw() -> tuple:
    return torch.rand(4).tolist(), random.random(), random.gauss(0, 1), np.random.rand(3).tolist()


def _weights_only_round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


class TestCaptureRngState:
    def test_loads_with_weights_only(self):
        state = _weights_only_round_trip(capture_rng_state())
        assert {"torch", "python", "numpy"} <= set(state)
        assert state["torch"].dtype == torch.uint8

    def test_has_cuda_only_with_a_gpu(self):
        assert ("cuda" in capture_rng_state()) == torch.cuda.is_available()


class TestRestoreRngState:
    def test_replays_the_same_numbers(self):
        random.gauss(0, 1)  # leave a cached gaussian in Python's state
        state = _weights_only_round_trip(capture_rng_state())
        expected = _draw()
        report = restore_rng_state(state)
        assert _draw() == expected
        assert report.complete and {"torch", "python", "numpy"} <= set(report.restored)

    def test_none_reports_everything_missing(self):
        report = restore_rng_state(None)
        assert not report.complete and "dropout" in report.missing[0]

    def test_a_missing_generator_is_reported_not_skipped(self):
        state = capture_rng_state()
        del state["python"]
        report = restore_rng_state(state)
        assert "python" not in report.restored
        assert any(line.startswith("python:") for line in report.missing)

    def test_malformed_state_raises(self):
        state = capture_rng_state()
        state["torch"] = torch.zeros(3, dtype=torch.uint8)
        with pytest.raises(ResumeError, match="torch random state is malformed"):
            restore_rng_state(state)

    def test_cuda_states_without_a_gpu_are_reported(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        state = capture_rng_state()
        state["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
        assert any("no GPU now" in line for line in restore_rng_state(state).missing)

    def test_cuda_is_initialised_before_its_state_is_set(self, monkeypatch):
        # A queued torch.manual_seed() would otherwise run after a queued set_rng_state (seen on an H200).
        calls = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "init", lambda: calls.append("init"))
        monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: calls.append(("set", index)))
        state = {"torch": torch.get_rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)]}
        report = restore_rng_state(state)
        assert calls == ["init", ("set", 0)] and "cuda" in report.restored
