"""What every source of safetensors files shares: detection, the probe's parsed header, WeightSets."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from ..safetensors_file import SafetensorsFile, looks_like_safetensors
from ..untrusted import open_untrusted
from .base import Probe, TensorSpec, WeightSet

__all__ = ["is_safetensors", "safetensors_of", "safetensors_weights", "open_safetensors"]


def is_safetensors(probe: Probe) -> bool:
    """A regular file whose first bytes look like a safetensors header (nothing parsed yet)."""
    return not probe.is_dir and looks_like_safetensors(probe.head, probe.size)


def safetensors_of(probe: Probe) -> SafetensorsFile:
    """The probe's file as a :class:`SafetensorsFile` (its header parsed and checked once per probe)."""
    return probe.cached("safetensors", lambda: SafetensorsFile(probe.file))


def safetensors_weights(
    files: SafetensorsFile | list[SafetensorsFile], *, close: Callable[[], None] | None = None
) -> WeightSet:
    """A WeightSet in the files' own names (tensors read when copied). Several files: a sharded set,
    each name read from the file that holds it (a name in two shards: the first wins)."""
    files = [files] if isinstance(files, SafetensorsFile) else files
    owner: dict[str, SafetensorsFile] = {}
    for file in files:
        for name in file.entries:
            owner.setdefault(name, file)
    specs = {
        name: TensorSpec(file.entries[name].shape, file.entries[name].dtype) for name, file in owner.items()
    }
    return WeightSet(specs, lambda name: owner[name].tensor(name), close=close)


def open_safetensors(path: Path, stack: contextlib.ExitStack) -> SafetensorsFile:
    """Open ``path`` through the boundary and parse its header; the file stays open until ``stack`` closes."""
    handle = stack.enter_context(open_untrusted(path))
    return SafetensorsFile(handle)
