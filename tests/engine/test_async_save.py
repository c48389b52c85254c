"""Background saves: the same file as a blocking save, one at a time, in order, failures never lost."""

from __future__ import annotations

import datetime as dt
import errno
import os
import threading
import zipfile
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch

from tests.engine.helpers import tiny_gpt_after_one_step
from tests.reliability.filesystems import failing_write
from utils.training.engine.async_save import (
    BackgroundWriter,
    default_writer,
    lower_thread_priority,
    wait_for_background_saves,
)
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.errors import CheckpointSaveError
from utils.training.engine.naming import is_temporary_file
from utils.training.engine.recovery import list_checkpoints

WHEN = dt.datetime(2025, 11, 22, 6, 54, 55)
METRICS = {"train_loss": 1.0, "val_loss": 1.1, "learning_rate": 1e-3}


@pytest.fixture
def trained():
    return tiny_gpt_after_one_step()


def _save(folder, model, optimizer, step=1, **kwargs):
    return save_checkpoint(
        folder, model, optimizer, epoch=0, global_step=step, metrics=METRICS, when=WHEN, **kwargs
    )


def _gated_write(gate: threading.Event, log: list):
    """A write that waits for ``gate`` before it writes a small file (and logs its start and end)."""

    def write(path: Path, snapshot) -> Path:
        log.append(("start", path.name))
        gate.wait(30)
        torch.save(snapshot, path)
        log.append(("end", path.name))
        return path

    return write


class TestSaveCheckpointInBackground:
    def test_writes_the_same_file_as_a_blocking_save(self, trained, tmp_path):
        model, optimizer = trained
        blocking = _save(tmp_path / "sync", model, optimizer)
        future = _save(tmp_path / "async", model, optimizer, blocking=False, writer=BackgroundWriter())
        assert isinstance(future, Future) and future.path.name == blocking.name
        with zipfile.ZipFile(blocking) as one, zipfile.ZipFile(future.result(timeout=60)) as other:
            names = [
                name for name in one.namelist() if not name.endswith("serialization_id")
            ]  # random per save
            assert names == [n for n in other.namelist() if not n.endswith("serialization_id")]
            assert all(
                one.read(name) == other.read(name) for name in names
            )  # the pickle, every tensor, the record

    def test_saves_the_state_of_the_call_not_of_later_steps(self, trained, tmp_path):
        model, optimizer = trained
        expected = {k: v.clone() for k, v in model.state_dict().items()}
        gate, log = threading.Event(), []
        writer = BackgroundWriter()
        future = writer.save(tmp_path / "a.pt", {"model": model.state_dict()}, _gated_write(gate, log))
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1.0)  # training goes on while the file is being written
        gate.set()
        saved = torch.load(future.result(timeout=60), weights_only=True)["model"]
        assert all(torch.equal(saved[k], expected[k]) for k in expected)

    def test_applies_retention_in_the_background(self, trained, tmp_path):
        model, optimizer = trained
        writer = BackgroundWriter()
        for step, val_loss in ((1, 0.5), (2, 2.0), (3, 3.0), (4, 4.0)):
            metrics = {**METRICS, "val_loss": val_loss}
            future = save_checkpoint(tmp_path, model, optimizer, epoch=0, global_step=step, metrics=metrics,
                                     when=WHEN, blocking=False, writer=writer)  # fmt: skip
        future.result(timeout=60)
        assert [info.global_step for info in list_checkpoints(tmp_path)] == [
            1,
            3,
            4,
        ]  # default: 1 best + 2 last

    def test_a_failed_write_is_the_futures_exception_and_loses_nothing(self, trained, tmp_path):
        model, optimizer = trained
        earlier = _save(tmp_path, model, optimizer, 1)
        writer = BackgroundWriter()
        with failing_write(tmp_path, errno.ENOSPC, room=4096):
            future = _save(tmp_path, model, optimizer, 2, blocking=False, writer=writer)
            error = future.exception(timeout=60)
        assert isinstance(error, CheckpointSaveError) and "No space left on device" in str(error)
        assert [info.path for info in list_checkpoints(tmp_path)] == [earlier]
        assert not [p for p in tmp_path.iterdir() if is_temporary_file(p.name)]
        assert [failure.error for failure in writer.take_failures()] == [error]

    def test_uses_the_process_wide_writer_by_default(self, trained, tmp_path):
        model, optimizer = trained
        future = _save(tmp_path, model, optimizer, blocking=False)
        assert future.result(timeout=60) in default_writer().completed
        assert default_writer() is default_writer()


class TestBackgroundWriterSave:
    def test_at_most_one_save_in_flight_and_they_finish_in_order(self, tmp_path):
        gate, log = threading.Event(), []
        writer = BackgroundWriter()
        first = writer.save(tmp_path / "1.pt", {"x": torch.ones(2)}, _gated_write(gate, log))
        second_started = threading.Event()

        def second_save():
            opened = threading.Event()
            opened.set()
            writer.save(tmp_path / "2.pt", {"x": torch.zeros(2)}, _gated_write(opened, log))
            second_started.set()

        caller = threading.Thread(target=second_save)
        caller.start()
        assert not second_started.wait(0.3)  # the second save waits for the first one
        assert log == [("start", "1.pt")]
        gate.set()
        caller.join(30)
        writer.wait(30)
        assert first.result() == tmp_path / "1.pt" and writer.last_wait_s > 0
        assert log == [("start", "1.pt"), ("end", "1.pt"), ("start", "2.pt"), ("end", "2.pt")]

    def test_completed_lists_saves_in_the_order_they_were_made(self, tmp_path):
        writer = BackgroundWriter()
        names = [f"{step}.pt" for step in range(5)]
        for name in names:
            writer.save(tmp_path / name, {"x": torch.ones(1)}, lambda path, s: torch.save(s, path) or path)
        writer.wait(30)
        assert [path.name for path in writer.completed] == names

    def test_on_saved_gets_each_written_path(self, tmp_path):
        seen = []
        writer = BackgroundWriter(on_saved=seen.append)
        future = writer.save(
            tmp_path / "a.pt", {"x": torch.ones(1)}, lambda path, s: torch.save(s, path) or path
        )
        future.result(timeout=30)
        assert seen == [tmp_path / "a.pt"]

    def test_a_failing_hook_is_reported_but_the_file_counts_as_written(self, tmp_path):
        def hook(path):
            raise RuntimeError("mirror queue broken")

        writer = BackgroundWriter(on_saved=hook)
        future = writer.save(
            tmp_path / "a.pt", {"x": torch.ones(1)}, lambda path, s: torch.save(s, path) or path
        )
        assert future.result(timeout=30) == tmp_path / "a.pt"
        assert [str(failure.error) for failure in writer.take_failures()] == ["mirror queue broken"]


class TestBackgroundWriterTakeFailures:
    def test_each_failure_is_returned_once_oldest_first(self, tmp_path):
        writer = BackgroundWriter()

        def fail(path, snapshot):
            raise CheckpointSaveError(path, f"injected failure of {path.name}")

        for name in ("a.pt", "b.pt"):
            writer.save(tmp_path / name, {"x": torch.ones(1)}, fail)
        writer.wait(30)
        assert [failure.path.name for failure in writer.take_failures()] == ["a.pt", "b.pt"]
        assert writer.take_failures() == []


class TestBackgroundWriterRelease:
    def test_waits_for_the_save_then_frees_the_host_memory(self, tmp_path):
        gate, log = threading.Event(), []
        writer = BackgroundWriter()
        future = writer.save(tmp_path / "a.pt", {"x": torch.ones(1000)}, _gated_write(gate, log))
        assert writer.snapshot.nbytes == 4000
        threading.Timer(0.1, gate.set).start()
        writer.release()
        assert future.done() and writer.snapshot.nbytes == 0 and writer.pending is None


class TestWaitForBackgroundSaves:
    def test_waits_for_every_writer_and_returns_what_was_in_flight(self, tmp_path):
        gate, log = threading.Event(), []
        writers = [BackgroundWriter(), BackgroundWriter()]
        futures = [
            writer.save(tmp_path / f"{i}.pt", {"x": torch.ones(1)}, _gated_write(gate, log))
            for i, writer in enumerate(writers)
        ]
        assert set(wait_for_background_saves(timeout=0)) == set(futures)
        threading.Timer(0.1, gate.set).start()
        wait_for_background_saves()
        assert all(future.done() for future in futures)
        assert wait_for_background_saves(timeout=0) == []


class TestLowerThreadPriority:
    def test_lowers_only_the_calling_thread(self):
        seen = {}

        def worker():
            lower_thread_priority(5)
            seen["thread"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        before = os.getpriority(os.PRIO_PROCESS, 0)
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert seen["thread"] == min(19, before + 5) and os.getpriority(os.PRIO_PROCESS, 0) == before

    def test_zero_changes_nothing(self):
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        lower_thread_priority(0)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before

    def test_the_writer_thread_runs_lowered(self, tmp_path):
        seen = []

        def write(path, snapshot):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return path

        before = os.getpriority(os.PRIO_PROCESS, 0)
        BackgroundWriter(nice=3).save(tmp_path / "a.pt", {"x": torch.ones(1)}, write).result(timeout=30)
        assert seen == [min(19, before + 3)]
