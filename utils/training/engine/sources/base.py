"""The one small interface every checkpoint source implements.

A *source* is one kind of checkpoint: this notebook's files, nanoGPT's ``ckpt.pt``, a
Lightning ``.ckpt``, a Hugging Face folder, a DCP folder, ... Each lives in one module
of this package and answers four questions about a path, cheapest first:

1. :meth:`Source.claims` -- is this path mine? From the :class:`Probe`: the path, its
   first bytes, a folder's file names, and (shared by every torch-file source) the
   torch file's structure read without tensor data.
2. :meth:`Source.read_record` -- what does it hold? A :class:`CheckpointRecord`, from
   metadata only (a JSON record, a safetensors header, ``config.json``, DCP's
   ``.metadata``, a restricted read of a pickle): never tensor data beyond scalars.
3. :meth:`Source.open_weights` -- the weights under *our* model's names, as a
   :class:`WeightSet`: shapes and dtypes known before any byte of data is read, each
   tensor read on demand (memory-mapped, renamed, transposed while copying).
4. :meth:`Source.open_training_state` -- the optimizer/scheduler/RNG/data state for an
   exact resume, for sources that carry it (default: none).

Adding a format is adding one module with one ``Source`` subclass and its test, and one
line in ``sources/__init__.py``'s registry.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..record import CheckpointRecord
from ..untrusted import UntrustedFile

__all__ = ["Probe", "Source", "TensorSpec", "WeightSet"]


@dataclass(frozen=True)
class TensorSpec:
    """What a stored tensor is, known without reading its data.

    ``problem`` says why it cannot be copied into a dense model tensor (an opaque or
    quantized tensor, ...); None when it can.
    """

    shape: tuple[int, ...]
    dtype: torch.dtype | None
    layout: str = "strided"  # "strided", "sparse_coo", ...
    problem: str | None = None

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


class WeightSet:
    """The weights of one checkpoint under the model's names, read lazily.

    Args:
        specs: our name -> :class:`TensorSpec`, in the file's order.
        read: our name -> a CPU tensor with that spec's shape (a memory-mapped view, possibly
            non-contiguous, e.g. transposed); called only when the loader copies it.
        storage_keys: our name -> a key equal for names that share one stored tensor (tied
            weights); names missing here are distinct.
        notes: what the source did to fit our names (one sentence each, shown to the user).
        close: releases the file (unmaps it); called by :meth:`close` / the context manager.
        checksums: given names, those whose stored bytes fail the file's own checksums (a zip's
            CRC-32s); None when the format stores none.
    """

    def __init__(
        self,
        specs: Mapping[str, TensorSpec],
        read: Callable[[str], torch.Tensor],
        *,
        storage_keys: Mapping[str, Hashable] | None = None,
        notes: tuple[str, ...] = (),
        close: Callable[[], None] | None = None,
        checksums: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        self._specs = dict(specs)
        self._read = read
        self._storage_keys = dict(storage_keys or {})
        self.notes = notes
        self._close = close
        self._checksums = checksums

    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> dict[str, TensorSpec]:
        return dict(self._specs)

    def spec(self, name: str) -> TensorSpec:
        return self._specs[name]

    def tensor(self, name: str) -> torch.Tensor:
        """The stored tensor ``name`` (raises KeyError for a name the set does not hold)."""
        if name not in self._specs:
            raise KeyError(name)
        return self._read(name)

    def storage_key(self, name: str) -> Hashable:
        """Equal for two names stored as one tensor (tied weights), distinct otherwise."""
        return self._storage_keys.get(name, ("own", name))

    def damaged(self, names: list[str]) -> list[str] | None:
        """Those of ``names`` whose bytes fail the file's checksums; None when it stores none."""
        return None if self._checksums is None else self._checksums(names)

    def renamed(self, mapping: Mapping[str, str], notes: tuple[str, ...] = ()) -> WeightSet:
        """The same weights under new names (``mapping``: new name -> current name)."""
        read, checksums = self._read, self._checksums
        return WeightSet(
            {new: self._specs[old] for new, old in mapping.items()},
            lambda name: read(mapping[name]),
            storage_keys={new: self.storage_key(old) for new, old in mapping.items()},
            notes=self.notes + notes,
            close=self._close,
            checksums=None if checksums is None else lambda names: checksums([mapping[n] for n in names]),
        )

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> WeightSet:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)


@dataclass
class Probe:
    """What a source may look at to claim a path, gathered once per path.

    ``head`` holds the first bytes of a regular file (empty for a folder); ``entries`` the
    names in a folder (empty for a file); ``file`` the regular file, open through the
    reading boundary until the probe's checkpoint is closed. ``cache`` lets sources share
    expensive reads of the same path (e.g. the torch file's structure).
    """

    path: Path
    is_dir: bool
    size: int = 0
    head: bytes = b""
    entries: tuple[str, ...] = ()
    link_target: Path | None = None
    file: UntrustedFile | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per probe; an exception is cached and raised again."""
        if key not in self.cache:
            try:
                self.cache[key] = (True, compute())
            except Exception as error:  # re-raised to every source that asks
                self.cache[key] = (False, error)
        ok, value = self.cache[key]
        if not ok:
            raise value
        return value


class Source(abc.ABC):
    """One kind of checkpoint; see the module docstring for the four questions."""

    kind: ClassVar[str]  # a key of record.KINDS

    @abc.abstractmethod
    def claims(self, probe: Probe) -> bool:
        """True when ``probe.path`` is this source's kind. Cheap; never raises for a foreign file."""

    @abc.abstractmethod
    def read_record(self, probe: Probe) -> CheckpointRecord:
        """The record, from metadata alone. Raises CheckpointError for a damaged file."""

    @abc.abstractmethod
    def open_weights(self, probe: Probe) -> WeightSet:
        """The weights under the model's names. Raises CheckpointError for a damaged file."""

    def open_training_state(self, probe: Probe) -> Mapping[str, Any] | None:
        """The checkpoint dict in this notebook's format (optimizer, RNG, data state, ...) for an
        exact resume; None when the source carries none (resume then loads the weights only)."""
        return None
