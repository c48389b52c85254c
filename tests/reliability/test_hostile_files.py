"""Hostile and half-finished checkpoint folders (tests/reliability/hostile.py), each run in a child
process with a time limit and a memory bound: nothing hangs, crashes, runs, changes global state,
prints raw control characters, leaks bytes, or costs a genuine checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .hostile import BUILDERS
from .hostile_child import TIME_LIMIT_S
from .report import note

ROOT = Path(__file__).resolve().parents[2]
SECTION = "hostile files (tests/reliability/hostile.py)"
MEMORY_BOUND_MB = 256  # what one case may add at its peak (a GPT-2 checkpoint's listing adds ~1 MB)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case, run once in one child process (one torch import for all of them)."""
    root = tmp_path_factory.mktemp("hostile")
    command = [sys.executable, "-m", "tests.reliability.hostile_child", str(root), *BUILDERS]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIME_LIMIT_S * len(BUILDERS) + 120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    note(SECTION, "cases", len(found))
    note(SECTION, "slowest case (s)", round(max(r["seconds"] for r in found.values()), 3))
    note(SECTION, "most memory one case added (MB)", round(max(r["added_mb"] for r in found.values()), 1))
    return found


@pytest.mark.parametrize("name", list(BUILDERS))
def test_hostile_case(results, name):
    result = results[name]
    assert result["outcome"] == "finished", result.get("traceback") or result["outcome"]
    assert result["added_mb"] < MEMORY_BOUND_MB, f"{name} added {result['added_mb']:.0f} MB at its peak"
    assert not result["counter_changed"], "collections.Counter gained attributes while reading a file"
    shown = json.dumps(result)
    assert "SECRET" not in shown, "bytes of a linked file were echoed"
    for text in (result.get("table", ""), result.get("panel", ""), result.get("error", "")):
        assert "\x1b" not in text, f"a raw escape character reached the output: {text[:300]!r}"
    for expected in result["expect_listed"]:
        assert expected in result["listed"], f"the genuine {expected} is no longer listed: {result['listed']}"
    hostile = result["path"]
    if hostile not in result["expect_listed"]:
        assert hostile not in result["listed"], f"the hostile {hostile!r} was listed"
    _check_operation(result)


def _check_operation(result: dict) -> None:
    reason = result["reason"]
    if result["operation"] == "list" and reason:
        assert result["path"] in result["skipped"], result["skipped"]
        assert re.search(reason, result["skipped"][result["path"]]), result["skipped"][result["path"]]
    if result["operation"] == "save":
        assert result["saved"] in result["listed"]
    if result["operation"] in ("load", "render"):
        assert result["loaded"] is result["loads"], result.get("error")
        if not result["loads"]:
            assert result["unchanged"], "a refused load changed the model"
            assert re.search(reason, result["error"]), result["error"]
    if result["operation"] == "render":
        assert len(result["panel"]) < 20_000, f"the panel is {len(result['panel']):,} characters long"
