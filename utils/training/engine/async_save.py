"""Saves that run in a background thread: one at a time, in order, and never lost.

:func:`save_checkpoint(..., blocking=False) <utils.training.engine.checkpoint.save_checkpoint>`
hands its work to a :class:`BackgroundWriter`:

1. wait until the previous save has finished (at most one save is in flight, so saves
   complete in the order they were made, and the host buffers of the previous snapshot
   are free again); :attr:`BackgroundWriter.last_wait_s` says how long that took;
2. copy the state to host memory (:mod:`snapshot`): the only part that blocks the caller;
3. start a thread that writes the file with every guarantee of a synchronous save (the
   same ``write_checkpoint_file``: temporary name, fsync, rename) and applies retention.

The caller gets a :class:`concurrent.futures.Future` whose result is the file's path, or
whose exception is the ``CheckpointSaveError`` the synchronous save would have raised.
A failure is also kept in :meth:`BackgroundWriter.take_failures` until someone takes it,
so it is reported even when nobody looks at the Future. The thread is not a daemon: a
Python process that ends normally waits for the file to be complete.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple

from .snapshot import HostSnapshot

__all__ = [
    "BACKGROUND_NICE",
    "BackgroundWriter",
    "SaveFailure",
    "default_writer",
    "lower_thread_priority",
    "wait_for_background_saves",
]

# How much lower than training the writer and mirror threads run (Linux nice, per thread):
# where training keeps every core busy (a CPU run), the file work then takes the cycles
# training leaves, instead of slowing training down; beside a GPU the cores are idle anyway.
BACKGROUND_NICE = 10

# Every writer with a save in flight, so that wait_for_background_saves() finds them all.
_WRITERS: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()
_DEFAULT: BackgroundWriter | None = None
_DEFAULT_LOCK = threading.Lock()


class SaveFailure(NamedTuple):
    """A background save that failed: the file it was writing and why."""

    path: Path
    error: BaseException


class BackgroundWriter:
    """Runs checkpoint writes in a background thread, at most one at a time.

    Args:
        on_saved: called with the path (in the writer thread) after each successful save,
            e.g. ``Mirror.enqueue``; it must not block.
        pin_memory: passed to :class:`HostSnapshot` (default: pin when CUDA is available).
        nice: how much to lower the writer thread's CPU priority (0: not at all).
    """

    def __init__(
        self,
        on_saved: Callable[[Path], None] | None = None,
        pin_memory: bool | None = None,
        nice: int = BACKGROUND_NICE,
    ) -> None:
        self.snapshot = HostSnapshot(pin_memory)
        self.on_saved = on_saved
        self.nice = nice
        self.last_wait_s = 0.0
        self.completed: list[Path] = []  # successful saves, in the order they finished
        self._future: Future | None = None
        self._failures: list[SaveFailure] = []
        self._lock = threading.Lock()
        _WRITERS.add(self)

    @property
    def pending(self) -> Future | None:
        """The save in flight, or None when the writer is idle."""
        future = self._future
        return future if future is not None and not future.done() else None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the save in flight; True when none is left (False: ``timeout`` ran out)."""
        future = self._future
        if future is None:
            return True
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        return done.wait(timeout)

    def save(self, path: Path, checkpoint: Any, write: Callable[[Path, Any], Path]) -> Future:
        """Snapshot ``checkpoint`` now and run ``write(path, snapshot)`` in the background.

        Args:
            path: the file the save will create (the Future's result, also ``future.path``).
            checkpoint: the checkpoint dict; its tensors are copied before this returns.
            write: writes the snapshot to ``path`` and returns the path; runs in the thread.

        Returns:
            A Future: ``result()`` is the path, or raises what ``write`` raised.
        """
        started = time.perf_counter()
        self.wait()  # the previous snapshot's buffers are about to be overwritten
        self.last_wait_s = time.perf_counter() - started
        snapshot = self.snapshot.copy(checkpoint)
        future: Future = Future()
        future.path = Path(path)
        future.set_running_or_notify_cancel()
        with self._lock:
            self._future = future
        thread = threading.Thread(
            target=self._run, args=(future, write, snapshot), name=f"checkpoint-writer-{Path(path).name}"
        )
        thread.start()
        return future

    def take_failures(self) -> list[SaveFailure]:
        """The failed saves not taken yet (oldest first); each is returned once."""
        with self._lock:
            failures, self._failures = self._failures, []
        return failures

    def release(self) -> None:
        """Wait for the save in flight, then free the snapshot's host memory."""
        self.wait()
        self.snapshot.release()

    def _run(self, future: Future, write: Callable[[Path, Any], Path], snapshot: Any) -> None:
        lower_thread_priority(self.nice)
        try:
            path = write(future.path, snapshot)
        except BaseException as error:  # kept and reported, never lost in the thread
            with self._lock:
                self._failures.append(SaveFailure(future.path, error))
            future.set_exception(error)
            return
        finally:
            del snapshot  # the buffers stay in self.snapshot; the references here are no longer needed
        self.completed.append(path)
        if self.on_saved is not None:
            try:
                self.on_saved(path)
            except Exception as error:  # a broken hook must not turn a written file into a failure
                with self._lock:
                    self._failures.append(SaveFailure(path, error))
        future.set_result(path)


def lower_thread_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority by ``nice`` (Linux: per thread); best effort elsewhere."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + nice))
    except OSError:  # not allowed or not supported: the thread runs at normal priority
        pass


def default_writer() -> BackgroundWriter:
    """The process-wide writer that ``save_checkpoint(blocking=False)`` uses when given none.

    Its host buffers stay allocated between saves; ``default_writer().release()`` frees them.
    """
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = BackgroundWriter()
        return _DEFAULT


def wait_for_background_saves(timeout: float | None = None) -> list[Future]:
    """Wait for every background save in flight in this process (every writer's).

    Args:
        timeout: seconds to wait for each writer; None waits until all are done.

    Returns:
        The Futures that were in flight when called (check ``done()`` after a timeout).
    """
    pending = [writer.pending for writer in list(_WRITERS)]
    pending = [future for future in pending if future is not None]
    for writer in list(_WRITERS):
        writer.wait(timeout)
    return pending
