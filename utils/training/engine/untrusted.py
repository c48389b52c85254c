"""The reading boundary: every byte the engine reads from a checkpoint path comes through here.

A checkpoint folder may hold anything: a half-written file, a named pipe called
``checkpoint.pt`` (``open`` would block forever), a symbolic link to ``/dev/zero`` or to
a private file, a member that inflates to gigabytes. This module:

* opens **regular files only** -- non-blocking, then ``fstat``: a FIFO, device or socket is
  refused before a byte is read; a symbolic link is resolved and its target reported;
* reads with **byte caps** (:data:`LIMITS`), so no crafted size makes it allocate or read
  more than the cap, and never echoes a foreign file's bytes in a message;
* memory-maps a file privately (copy-on-write) for tensor data, through the very file
  descriptor it checked (no second ``open`` of a path that may have changed);
* turns every ``OSError`` into a :class:`CheckpointError` that names the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import CheckpointError, CheckpointNotFoundError, NotACheckpointError

__all__ = [
    "LIMITS",
    "Limits",
    "UntrustedFile",
    "folder_entries",
    "load_json",
    "open_untrusted",
    "open_error",
    "read_small_file",
]

NOT_FOUND_FIX = "check the path; list_checkpoints(folder) shows the checkpoints that exist"


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one read may cost; each says why it is large enough."""

    record_bytes: int = 16 << 20  # our JSON record: a history of thousands of epochs is under 1 MiB
    # objects and arrays in our record: 3 per epoch of history (the row, its per-tensor and per-layer
    # change), so 100,000 covers 30,000 epochs
    record_containers: int = 100_000
    pickle_bytes: int = 64 << 20  # data.pkl: tens of KB for GPT-2 with AdamW; lists of losses in MB
    text_file_bytes: int = 8 << 20  # config.json, model.safetensors.index.json, model.config.json
    header_bytes: int = 64 << 20  # a safetensors JSON header (safetensors' own limit is 100 MB)
    scalar_bytes: int = 64  # a metric stored as a one-element tensor (nanoGPT's best_val_loss)
    folder_entries: int = 100_000  # names read from one folder


LIMITS = Limits()
_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


class UntrustedFile:
    """A regular file opened through the boundary (see :func:`open_untrusted`)."""

    def __init__(self, path: Path, file: BinaryIO, size: int, link_target: Path | None) -> None:
        self.path = path
        self.file = file
        self.size = size
        self.link_target = link_target
        self._map: mmap.mmap | None = None

    def head(self, count: int) -> bytes:
        self.file.seek(0)
        return self.file.read(count)

    def read_at(self, offset: int, count: int) -> bytes:
        """Exactly ``count`` bytes at ``offset``; a file that ends early is damage, not a short read."""
        if offset < 0 or count < 0 or offset + count > self.size:
            raise CheckpointError(
                self.path, f"asks for bytes {offset:,}..{offset + count:,} of a {self.size:,}-byte file"
            )
        self.file.seek(offset)
        data = self.file.read(count)
        if len(data) != count:
            raise CheckpointError(self.path, "ended early while it was being read (changed meanwhile?)")
        return data

    def memory_map(self) -> mmap.mmap:
        """A private, copy-on-write map of the whole file (tensors become views of the page cache)."""
        if self._map is None:
            self._map = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_COPY)
        return self._map

    def close(self) -> None:
        # The map is never closed here: torch.frombuffer keeps the map object alive but holds no
        # buffer export, so mmap.close() would unmap pages under tensors that still view them.
        # The map goes when the last tensor viewing it does.
        self._map = None
        self.file.close()


@contextlib.contextmanager
def open_untrusted(path: str | os.PathLike) -> Iterator[UntrustedFile]:
    """Open ``path`` for reading if it is a regular file (a symbolic link is followed and reported).

    Raises:
        CheckpointNotFoundError: missing, a broken link, a folder, or a part of the path is a file.
        NotACheckpointError: a FIFO, device or socket (refused without reading it).
        CheckpointError: any other OSError (permission denied, an I/O error).
    """
    path = Path(path)
    link_target = _link_target(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise open_error(path, error) from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, info.st_mode)
        _clear_nonblocking(fd)
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    handle = UntrustedFile(path, file, info.st_size, link_target)
    try:
        yield handle
    except CheckpointError:
        raise
    except OSError as error:
        raise open_error(path, error) from error
    finally:
        handle.close()


def _link_target(path: Path) -> Path | None:
    try:
        return Path(os.path.realpath(path)) if os.path.islink(path) else None
    except OSError:
        return None


def _clear_nonblocking(fd: int) -> None:
    # O_NONBLOCK only kept open() from blocking on a FIFO; regular-file reads ignore it, but
    # a clean descriptor behaves the same on every platform.
    try:
        import fcntl
    except ImportError:  # Windows: O_NONBLOCK does not exist there either
        return
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)


def _not_regular(path: Path, mode: int) -> CheckpointError:
    what = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    if stat.S_ISDIR(mode):
        return _folder_error(path)
    return NotACheckpointError(
        path,
        f"is {what}, not a file: refused without reading it",
        expected="a regular checkpoint file",
        fix="remove it from the checkpoint folder, or pass the path of a real checkpoint file",
    )


def _folder_error(path: Path) -> CheckpointNotFoundError:
    return CheckpointNotFoundError(
        path,
        "is a folder, not a checkpoint file",
        expected="the path of one checkpoint file (*.pt) inside it, or a checkpoint folder of a known layout",
        fix="pass a path from list_checkpoints(folder), e.g. list_checkpoints(folder)[0].path",
    )


def open_error(path: Path, error: OSError) -> CheckpointError:
    """The CheckpointError for an OSError raised while opening or reading ``path``."""
    if isinstance(error, IsADirectoryError) or (isinstance(error, PermissionError) and path.is_dir()):
        return _folder_error(path)
    if isinstance(error, FileNotFoundError):
        link = path.is_symlink()
        problem = "is a broken symbolic link: its target does not exist" if link else "does not exist"
        return CheckpointNotFoundError(
            path, problem, expected="an existing checkpoint file", fix=NOT_FOUND_FIX
        )
    if isinstance(error, NotADirectoryError):
        return CheckpointNotFoundError(
            path,
            "does not exist: a part of its path is a file, not a folder",
            expected="an existing checkpoint file",
            fix="check the path: is the checkpoint folder's name the name of a file?",
        )
    if error.errno == errno.ELOOP:
        return CheckpointNotFoundError(path, "is a loop of symbolic links", fix=NOT_FOUND_FIX)
    return CheckpointError(
        path, f"cannot be read: {error.strerror or error}", fix="check the file's permissions"
    )


def read_small_file(path: Path, max_bytes: int) -> bytes:
    """The whole of a small regular file (a config, an index, a DCP ``.metadata``), capped.

    Raises:
        The errors of :func:`open_untrusted`; CheckpointError when the file is over ``max_bytes``.
    """
    with open_untrusted(path) as handle:
        if handle.size > max_bytes:
            raise CheckpointError(
                path, f"refused: {handle.size:,} bytes, more than the {max_bytes:,} such a file may have"
            )
        return handle.read_at(0, handle.size)


def load_json(data: bytes, max_containers: int) -> Any:
    """JSON from a file, refused before parsing when it holds more objects and arrays than a
    file of its kind needs: a byte cap alone lets 16 MB of ``{}`` become millions of dicts.

    Raises:
        ValueError: over the budget (the message starts with ``refused:``), nested too deeply,
            or not valid JSON.
    """
    containers = data.count(b"{") + data.count(b"[")  # an upper bound: braces inside strings count too
    if containers > max_containers:
        raise ValueError(f"refused: it holds {containers:,} objects and arrays (at most {max_containers:,})")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("refused: it is nested too deeply") from None


def folder_entries(folder: Path, limit: int = LIMITS.folder_entries) -> list[str]:
    """The names in ``folder``, sorted; at most ``limit`` are read (the rest are ignored).

    Raises:
        OSError: the folder cannot be listed.
    """
    names = []
    with os.scandir(folder) as entries:
        for entry in entries:
            names.append(entry.name)
            if len(names) >= limit:
                break
    return sorted(names)
