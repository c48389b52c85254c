"""The training loop's side of background saves and of the mirror: what is in flight, what finished.

``train()`` asks :class:`LoopSaves` three things: start a save (after waiting for the previous
one, at most one is in flight), which saves finished since the last step (to record them,
or report a failure at the next step), and, at the end, to wait for everything. The loop
itself decides what an outcome means for the run (``TrainingRun.checkpoints``,
``save_failures``, ``stop_on_save_error``); this module only keeps the bookkeeping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.training.engine.async_save import BackgroundWriter
from utils.training.engine.mirror import Mirror, MirrorFailure, MirrorStatus
from utils.training.engine.retention import RetentionPolicy
from utils.training.settings import TrainConfig

__all__ = ["LoopSaves", "SaveOutcome"]


@dataclass(frozen=True)
class SaveOutcome:
    """A save that finished: its file, where in the run it was made, and its error (None: written)."""

    path: Path
    where: str
    metrics: dict[str, Any]
    error: BaseException | None = None


@dataclass
class _InFlight:
    future: Future
    where: str
    metrics: dict[str, Any]


@dataclass
class LoopSaves:
    """The writer (None: saves block) and the mirror (None: no mirror) of one ``train()`` call."""

    writer: BackgroundWriter | None
    mirror: Mirror | None
    waited_s: float = 0.0  # in all, this run
    _in_flight: _InFlight | None = field(default=None, repr=False)

    @classmethod
    def open(cls, config: TrainConfig, checkpoint_dir: Path) -> LoopSaves:
        """The saves ``config`` asks for (``async_save``, ``mirror_dir``) into ``checkpoint_dir``.

        Raises:
            ValueError: the mirror folder is the checkpoint folder itself.
        """
        mirror = None
        if config.mirror_dir:
            folder = Path(config.mirror_dir).expanduser()
            if os.path.realpath(folder) == os.path.realpath(checkpoint_dir):
                raise ValueError(
                    f"mirror_dir {str(folder)!r} is the checkpoint folder itself: a mirror must be another "
                    "folder (e.g. on Google Drive); set MIRROR_DIR = '' to have none"
                )
            mirror = Mirror(folder, RetentionPolicy(keep_best=config.keep_best, keep_last=config.keep_last))
        writer = BackgroundWriter(on_saved=mirror.enqueue if mirror else None) if config.async_save else None
        return cls(writer, mirror)

    @property
    def background(self) -> bool:
        return self.writer is not None

    @property
    def in_flight_name(self) -> str | None:
        return self._in_flight.future.path.name if self._in_flight else None

    def wait_for_previous(self) -> tuple[list[SaveOutcome], float]:
        """Wait for the save in flight; returns its outcome and the seconds waited (0.0: it was done)."""
        if self._in_flight is None or self._in_flight.future.done():
            return self.finished(), 0.0
        started = time.perf_counter()
        self.writer.wait()
        waited = time.perf_counter() - started
        self.waited_s += waited
        return self.finished(), waited

    def start(self, save: Callable[[BackgroundWriter], Future], where: str, metrics: dict[str, Any]) -> Path:
        """Start a background save (the writer must be idle: call :meth:`wait_for_previous` first).

        Args:
            save: starts the save on the writer it is given, e.g. ``save_checkpoint(..., blocking=False)``.

        Returns:
            The path the file will have.
        """
        future = save(self.writer)
        self._in_flight = _InFlight(future, where, dict(metrics))
        return future.path

    def finished(self) -> list[SaveOutcome]:
        """The save that finished since the last call (an empty list when none did)."""
        flight = self._in_flight
        if flight is None or not flight.future.done():
            return []
        self._in_flight = None
        error = flight.future.exception()
        if error is not None:
            self.writer.take_failures()  # reported by the loop now: not again
        return [SaveOutcome(flight.future.path, flight.where, flight.metrics, error)]

    def wait_for_all(self) -> list[SaveOutcome]:
        """Wait for the save in flight (the end of a run)."""
        if self.writer is not None:
            self.writer.wait()
        return self.finished()

    def mirror_failures(self) -> list[MirrorFailure]:
        """Mirror copies that failed since the last call."""
        return self.mirror.take_new_failures() if self.mirror else []

    def mirror_status(self) -> MirrorStatus | None:
        return self.mirror.status() if self.mirror else None

    def close(self) -> None:
        """Free the snapshot's host memory (a write still running keeps what it uses)."""
        if self.writer is not None:
            self.writer.snapshot.release()
