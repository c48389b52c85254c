"""A real training run SIGKILLed 60 times (resumed each time), and listing while another process saves.

kill_driver.py does the killing (one torch import, forked trainers). After every kill,
with nothing writing, it lists the folder and loads every listed file; these tests
check its records: nothing unloadable was ever listed, nothing was lost beyond what
the retention policy (keep_best=1, keep_last=3) deletes, and the run kept progressing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from utils.training.engine.errors import CheckpointNotFoundError
from utils.training.engine.loading import load_model_weights
from utils.training.engine.recovery import scan_checkpoints

from .corpus import fresh_model
from .report import note

HERE = Path(__file__).parent
KILLS = 60
KEEP_BEST, KEEP_LAST = 1, 3


@pytest.fixture(scope="module")
def kills(tmp_path_factory):
    """Run the driver once; yields one record per kill (and deletes the files afterwards)."""
    folder = tmp_path_factory.mktemp("killed") / "checkpoints"
    command = [
        sys.executable,
        str(HERE / "kill_driver.py"),
        str(folder),
        "--kills",
        str(KILLS),
        "--seed",
        "6",
    ]
    command += ["--keep-best", str(KEEP_BEST), "--keep-last", str(KEEP_LAST)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]
    kills = records[:-1]
    section = "SIGKILL during a real training run (tests/reliability/kill_driver.py)"
    note(section, "kills (each resumed with RESUME='latest')", len(kills))
    note(
        section,
        "kills that landed inside a save (temporary file left)",
        sum(bool(k["temporary"]) for k in kills),
    )
    note(
        section, "listed checkpoints loaded after the kills (both ways)", sum(len(k["listed"]) for k in kills)
    )
    note(
        section,
        "load failures / skipped files",
        sum(len(k["load_failures"]) + len(k["skipped"]) for k in kills),
    )
    note(section, "steps trained in total", kills[-1]["latest_step"])
    note(section, "driver wall time (s)", records[-1]["elapsed_s"])
    yield kills
    shutil.rmtree(folder, ignore_errors=True)


def _entries(record: dict) -> dict[str, tuple]:
    """name -> (global_step, val_loss, time_order)."""
    return {name: (step, val, when) for name, step, val, when in record["listed"]}


def _deletable_by_retention(entry: tuple, after: dict[str, tuple]) -> bool:
    """Could keep_best/keep_last have deleted this checkpoint, given what is listed afterwards?"""
    step, val, when = entry
    newer = [e for e in after.values() if (e[0], e[2]) > (step, when)]
    if len(newer) < KEEP_LAST:
        return False  # it was still one of the newest KEEP_LAST
    scored = sorted(e[1] for e in after.values() if e[1] is not None)
    return val is None or (len(scored) >= KEEP_BEST and scored[KEEP_BEST - 1] <= val)


@pytest.mark.slow
class TestTrainUnderSigkill:
    def test_every_kill_hit_a_running_training_process(self, kills):
        assert len(kills) == KILLS
        assert all(k["started"] and k["killed_by_signal"] for k in kills)

    def test_many_kills_landed_inside_a_save(self, kills):
        inside = [k for k in kills if k["temporary"]]
        print(f"kills that left a half-written temporary file: {len(inside)}/{len(kills)}")
        assert len(inside) >= 5

    def test_no_listed_checkpoint_fails_to_load_or_is_skipped(self, kills):
        loaded = sum(len(k["listed"]) for k in kills)
        assert loaded >= KILLS  # every kill: each listed file loaded both ways
        assert [k["load_failures"] for k in kills if k["load_failures"]] == []
        assert [k["skipped"] for k in kills if k["skipped"]] == []

    def test_no_checkpoint_is_lost_beyond_retention(self, kills):
        for before, after in zip(kills, kills[1:], strict=False):
            gone = {n: e for n, e in _entries(before).items() if n not in _entries(after)}
            wrongly = [n for n, e in gone.items() if not _deletable_by_retention(e, _entries(after))]
            assert not wrongly, f"kill {after['kill']} lost {wrongly}"

    def test_the_run_resumes_and_keeps_progressing(self, kills):
        steps = [k["latest_step"] for k in kills]
        assert steps == sorted(steps) and steps[-1] >= 3 * KILLS
        assert all(len(k["listed"]) >= 1 for k in kills)

    def test_leftover_temporary_files_are_cleaned_by_the_next_save(self, kills):
        for before, after in zip(kills, kills[1:], strict=False):
            if after["latest_step"] > before["latest_step"]:  # the next trainer saved at least once
                assert not set(before["temporary"]) & set(after["temporary"])


@pytest.mark.slow
class TestListCheckpointsWhileSaving:
    def test_listing_never_fails_and_never_offers_an_unloadable_file(self, tmp_path):
        folder = tmp_path / "live"
        saver = subprocess.Popen([sys.executable, str(HERE / "saver_child.py"), str(folder)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        try:
            counts = _list_and_load_while_saving(folder, saver, seconds=4.0)
        finally:
            saver.kill()
            saver.wait()
        for label, value in counts.items():
            note(
                "listing while another process saves (retention on)",
                label,
                value if isinstance(value, int) else len(value),
            )
        assert counts["listings"] >= 20 and counts["loaded"] >= 20
        assert counts["skipped"] == [] and counts["failed"] == []


def _list_and_load_while_saving(folder: Path, saver: subprocess.Popen, seconds: float) -> dict:
    """List and load in a loop while ``saver`` trains; a file deleted by retention meanwhile is counted."""
    deadline = time.monotonic() + 60
    while not scan_checkpoints(folder).checkpoints:
        assert saver.poll() is None, saver.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the saver wrote no checkpoint within 60 s"
        time.sleep(0.05)
    counts = {"listings": 0, "loaded": 0, "deleted_meanwhile": 0, "skipped": [], "failed": []}
    model = fresh_model()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        result = scan_checkpoints(folder)
        counts["listings"] += 1
        counts["skipped"] += result.skipped
        for info in result.checkpoints:
            try:
                load_model_weights(model, info.path, "cpu")
                torch.load(info.path, map_location="cpu", weights_only=True)
                counts["loaded"] += 1
            except (CheckpointNotFoundError, FileNotFoundError) as error:
                if info.path.exists():  # "not found" for a file that is there is a failure
                    counts["failed"].append(f"{info.name}: {type(error).__name__}: {error}")
                counts["deleted_meanwhile"] += 1  # retention removed it after the listing
            except Exception as error:  # anything else is a failure of the engine
                counts["failed"].append(f"{info.name}: {type(error).__name__}: {error}")
    assert saver.poll() is None, "the saver died during the test"
    return counts
