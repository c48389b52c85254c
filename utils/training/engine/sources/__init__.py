"""Every kind of checkpoint the engine reads, behind one interface (see ``base.py``).

:func:`open_checkpoint` probes a path once (through the reading boundary), asks each
source in :data:`REGISTRY` order whether the path is its kind, and yields the answer::

    with open_checkpoint(path) as checkpoint:
        record = checkpoint.record()              # metadata only
        with checkpoint.weights() as weights:     # our names, read lazily
            ...

Order matters where kinds overlap: our own record comes first; a plain state_dict
("bare") last, after the tools whose files are also dicts of tensors (a
``torch.save(hf_model.state_dict())`` is one: Hugging Face claims it by its Conv1D shapes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, CorruptCheckpointError, NotACheckpointError
from ..record import CheckpointRecord
from ..text import safe_text
from ..torchfile import INTERRUPTED_FIX
from ..untrusted import folder_entries, open_error, open_untrusted
from .base import Probe, Source, TensorSpec, WeightSet
from .dcp import DcpSource
from .huggingface import HuggingFaceSource
from .lightning import LightningSource
from .nanogpt import NanoGPTSource
from .native import BareSource, NativeSource
from .safetensors_export import SafetensorsExportSource
from .sharded import ShardedSource

__all__ = [
    "REGISTRY",
    "OpenedCheckpoint",
    "claiming_source",
    "Probe",
    "Source",
    "TensorSpec",
    "WeightSet",
    "open_checkpoint",
    "probe_path",
    "read_record",
    "unknown_error",
]

_HEAD_BYTES = 64

REGISTRY: tuple[Source, ...] = (
    ShardedSource(),  # folders: ours first (it is a DCP folder too, with our record)
    DcpSource(),
    NativeSource(),
    NanoGPTSource(),  # dicts with "model" + "model_args"/"iter_num"
    LightningSource(),  # dicts with "state_dict" + Lightning's version
    SafetensorsExportSource(),  # safetensors in our names (before Hugging Face's: decided by layout)
    HuggingFaceSource(),  # folders with config.json; HF-layout safetensors and state_dicts
    BareSource(),  # any other state_dict: last, as HF state_dicts are state_dicts too
)


@dataclass
class OpenedCheckpoint:
    """A path whose source is known; valid inside :func:`open_checkpoint`'s ``with`` block."""

    source: Source
    probe: Probe

    @property
    def kind(self) -> str:
        return self.source.kind

    def record(self) -> CheckpointRecord:
        return self.source.read_record(self.probe)

    def weights(self) -> WeightSet:
        return self.source.open_weights(self.probe)

    def training_state(self) -> Mapping[str, Any] | None:
        return self.source.open_training_state(self.probe)


@contextlib.contextmanager
def open_checkpoint(
    path: str | os.PathLike, *, sources: Sequence[Source] = REGISTRY
) -> Iterator[OpenedCheckpoint]:
    """Probe ``path`` and find its source.

    Raises:
        CheckpointNotFoundError: nothing there (or a broken link).
        NotACheckpointError: no source claims it (a FIFO, a foreign file, a folder of other files).
        CorruptCheckpointError, UnsafeCheckpointError: a source recognised it, but it is damaged
            or needs arbitrary unpickling.
    """
    with probe_path(path) as probe:
        yield OpenedCheckpoint(_detect(probe, sources), probe)


@contextlib.contextmanager
def probe_path(path: str | os.PathLike, *, is_dir: bool | None = None) -> Iterator[Probe]:
    """The :class:`Probe` of ``path`` (its file open through the boundary until the block ends).

    Args:
        is_dir: whether ``path`` is a folder, when the caller already knows (a listing's
            ``scandir`` does): saves a ``stat`` per entry.
    """
    with contextlib.ExitStack() as stack:
        yield _probe(Path(path), stack, is_dir)


def read_record(path: str | os.PathLike) -> CheckpointRecord:
    """The record of one checkpoint file or folder, from its metadata alone."""
    with open_checkpoint(path) as checkpoint:
        return checkpoint.record()


def _probe(path: Path, stack: contextlib.ExitStack, is_dir: bool | None = None) -> Probe:
    if is_dir is None:
        try:
            is_dir = path.is_dir()
        except OSError as error:
            raise open_error(path, error) from error
    if is_dir:
        try:
            entries = tuple(folder_entries(path))
        except OSError as error:
            raise open_error(path, error) from error
        link = Path(os.path.realpath(path)) if path.is_symlink() else None
        return Probe(path, True, entries=entries, link_target=link)
    handle = stack.enter_context(open_untrusted(path))
    if handle.size == 0:
        raise CorruptCheckpointError(path, "is empty (0 bytes)", expected="a checkpoint", fix=INTERRUPTED_FIX)
    return Probe(
        path,
        False,
        size=handle.size,
        head=handle.head(_HEAD_BYTES),
        link_target=handle.link_target,
        file=handle,
    )


def _detect(probe: Probe, sources: Sequence[Source]) -> Source:
    source = claiming_source(probe, sources)
    if source is None:
        raise unknown_error(probe)
    return source


def claiming_source(probe: Probe, sources: Sequence[Source] = REGISTRY) -> Source | None:
    """The first source that claims the probed path, or None when none does."""
    return next((source for source in sources if source.claims(probe)), None)


def _content_kind(head: bytes) -> str:
    """What a file's first bytes look like, in words (the bytes themselves are never shown)."""
    if head.startswith(b"PK") or (head and b"PK\x03\x04".startswith(head)):
        return "a zip archive, cut short or not written by torch.save"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:32]):
        return "text"
    return "binary data of an unknown format"


def unknown_error(probe: Probe) -> CheckpointError:
    """The error for a path no source claims."""
    if probe.is_dir:
        shown = ", ".join(safe_text(name, 80) for name in probe.entries[:6]) + (
            ", ..." if len(probe.entries) > 6 else ""
        )
        return NotACheckpointError(
            probe.path,
            f"is a folder that is not a checkpoint of a known layout (it holds: {shown or 'nothing'})",
            expected="checkpoint files, a Hugging Face folder (config.json + weights), "
            "a torch.distributed.checkpoint folder (.metadata + *.distcp) or a sharded checkpoint folder",
            fix="pass one checkpoint file inside it, or list it with list_checkpoints(folder)",
        )
    structure = probe.cache.get("structure")
    if structure is not None and structure[0]:  # a torch file that reads fine but holds no weights
        from .. import format as fmt
        from ..safe_unpickle import TensorStub

        return NotACheckpointError(
            probe.path,
            f"is a PyTorch file, but holds {fmt.describe_object(structure[1], TensorStub)}, not model weights",
            expected="a checkpoint dict with 'model_state_dict', or a state_dict of tensors",
            fix="pass a file written by save_checkpoint, or torch.save(model.state_dict())",
        )
    return NotACheckpointError(
        probe.path,
        f"is damaged or not a checkpoint ({probe.size:,} bytes of {_content_kind(probe.head)}, "
        "in no format this reader knows)",
        expected="a PyTorch checkpoint (.pt/.ckpt/.bin) or a safetensors file",
        fix="pick another checkpoint (a save cut short by a disconnect leaves such files); "
        "list_checkpoints(folder) shows the ones that can be read",
    )
