"""One typed record of what a checkpoint is and holds: every reader returns it, every consumer reads it.

A checkpoint's facts used to travel in several shapes (a metadata dict, the listing's
entry, a normalised dict, the loader's report, the recovered results); a ``None`` in one of
them crashed a view that expected a number. Now each source reader (``sources/``)
builds one :class:`CheckpointRecord` from whatever its file carries, and the listing,
retention, the loader's report, recovery, resume and the notebook's views all read it.

Values from a file are evidence, never trusted as they are: :func:`clean_int`,
:func:`clean_float` and :func:`clean_timestamp` turn anything odd (a 400-digit integer,
NaN, a timestamp with escape codes) into ``None`` before a record is built.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS",
    "CheckpointRecord",
    "METRIC_NAMES",
    "clean_float",
    "clean_int",
    "clean_run_id",
    "clean_timestamp",
    "time_order",
]

METRIC_NAMES = ("train_loss", "val_loss", "learning_rate")
# Where a checkpoint came from; LoadReport.kind and the listing's kind are one of these.
KINDS = {
    "full": "this notebook's checkpoint",
    "legacy": "the earlier training cell's checkpoint",
    "bare": "a plain state_dict (torch.save(model.state_dict()))",
    "module": "a pickled model object (trusted file)",
    "nanogpt": "a nanoGPT train.py checkpoint (ckpt.pt)",
    "lightning": "a PyTorch Lightning checkpoint (.ckpt)",
    "huggingface": "Hugging Face GPT-2 weights",
    "safetensors": "safetensors weights exported by this notebook",
    "dcp": "a torch.distributed.checkpoint folder",
    "sharded": "this notebook's sharded (FSDP) checkpoint folder",
}
# Integers beyond this are not counters a run could have reached: treated as absent.
_MAX_COUNTER = 2**62
_MAX_TIMESTAMP_CHARS = 40


@dataclass(frozen=True)
class CheckpointRecord:
    """What one checkpoint file (or folder) is and holds, read without its tensor data.

    Every field is already cleaned: counters are non-negative ints or None, metrics
    finite floats or None, the timestamp an ISO-8601 string or None.
    """

    path: Path
    kind: str  # a key of KINDS
    epoch: int | None = None  # 0-based epoch the save happened in
    global_step: int | None = None
    timestamp: str | None = None  # ISO-8601
    metrics: Mapping[str, float | None] = field(default_factory=dict)  # METRIC_NAMES and extras
    history: tuple[Mapping[str, Any], ...] = ()  # one row per epoch, oldest first
    config: Mapping[str, Any] = field(default_factory=dict)  # {"model": {...}, "training": {...}, ...}
    data_state: Mapping[str, Any] | None = None
    has_optimizer: bool = False
    has_rng_state: bool = False
    tensor_count: int | None = None
    size_bytes: int = 0
    format_version: int | None = None
    source: str = "record"  # how the facts were read: "record", "pickle", "header", "config", ...
    run_id: str | None = None  # the training run that wrote it (retention prunes one run's files only)
    link_target: Path | None = None  # where a symbolic link pointed (reported, then read)
    notes: tuple[str, ...] = ()  # what a reader inferred or could not know, one sentence each

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6

    @property
    def train_loss(self) -> float | None:
        return self.metrics.get("train_loss")

    @property
    def val_loss(self) -> float | None:
        return self.metrics.get("val_loss")

    @property
    def learning_rate(self) -> float | None:
        return self.metrics.get("learning_rate")

    @property
    def model_config(self) -> dict[str, Any] | None:
        """The stored model settings (GPTConfig's keys), or None when the file has none."""
        model = self.config.get("model")
        return dict(model) if isinstance(model, Mapping) and model else None

    @property
    def training_config(self) -> dict[str, Any] | None:
        training = self.config.get("training")
        return dict(training) if isinstance(training, Mapping) and training else None

    @property
    def time_order(self) -> float:
        """Seconds since the epoch of ``timestamp`` (0.0 when unknown), for ordering ties."""
        return time_order(self.timestamp)

    @property
    def recency(self) -> tuple[int, float, str]:
        """Sort key of "newest": highest step, then newest timestamp, then name."""
        step = self.global_step if self.global_step is not None else -1
        return (step, self.time_order, self.name)


def clean_int(value: Any) -> int | None:
    """A counter from a file: a non-negative int below 2**62 (a whole float counts), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    return value if 0 <= value < _MAX_COUNTER else None


def clean_float(value: Any) -> float | None:
    """A metric from a file: a finite float, else None. Huge integers count as absent, never raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int with hundreds of digits
        return None
    return value if math.isfinite(value) else None


def clean_run_id(value: Any) -> str | None:
    """A run id as the saver writes it (a short printable string), else None."""
    return value if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable() else None


def clean_timestamp(value: Any) -> str | None:
    """An ISO-8601 timestamp (seconds), from a string or from seconds since the epoch; else None.

    Anything that is not a parsable time (escape codes, a page of text) is dropped, so a
    view never prints raw text a file chose.
    """
    if isinstance(value, str):
        if len(value) > _MAX_TIMESTAMP_CHARS:
            return None
        try:
            return _dt.datetime.fromisoformat(value).isoformat(timespec="seconds")
        except ValueError:
            return None
    seconds = clean_float(value)
    if seconds is None:
        return None
    try:  # seconds since the epoch, as some scripts store time.time()
        return _dt.datetime.fromtimestamp(seconds).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def time_order(timestamp: str | None) -> float:
    """Seconds since the epoch of an ISO-8601 ``timestamp``; 0.0 when unknown or unreadable."""
    try:
        return _dt.datetime.fromisoformat(timestamp).timestamp() if timestamp else 0.0
    except (TypeError, ValueError, OverflowError, OSError):
        return 0.0
