"""The checkpoint engine's own exceptions.

Every message names the file, what was found, what was expected and how to fix
it, so that a notebook cell can print ``str(error)`` and nothing else. Every
class except the base ``CheckpointError`` and ``UnsafeCheckpointError`` (a refusal,
not a missing or malformed thing) also derives from the built-in type a caller would
naturally catch (``FileNotFoundError``, ``ValueError``, ``OSError``), so generic
handlers keep working.
"""

from __future__ import annotations

import os

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "NoCheckpointsError",
    "CorruptCheckpointError",
    "NotACheckpointError",
    "UnsafeCheckpointError",
    "ArchitectureMismatchError",
    "CheckpointSaveError",
    "ResumeError",
]


class CheckpointError(Exception):
    """Base class: something about a checkpoint file stops the operation.

    Args:
        path: the file (or folder) concerned; ``None`` when there is none.
        problem: what was found, one sentence.
        expected: what was expected instead (optional).
        fix: what the user can do about it (optional).
    """

    def __init__(
        self,
        path: os.PathLike | str | None,
        problem: str,
        *,
        expected: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        self.expected = expected
        self.fix = fix
        super().__init__(self._compose())

    def _compose(self) -> str:
        from .text import safe_text  # a path from the disk may hold control characters

        def escaped(text: str) -> str:  # line breaks are ours; anything else a file chose is escaped
            return "\n".join(safe_text(line, None) for line in str(text).split("\n"))

        lines = []
        if self.path is not None:
            lines.append(f"{safe_text(self.path, None)}: {escaped(self.problem)}")
        else:
            lines.append(escaped(self.problem))
        if self.expected:
            lines.append(f"Expected: {escaped(self.expected)}")
        if self.fix:
            lines.append(f"Fix: {escaped(self.fix)}")
        return "\n".join(lines)

    def __reduce__(self):  # keep the exception picklable across processes
        return (
            _rebuild,
            (type(self), self.path, self.problem, self.expected, self.fix, self.__dict__),
        )


def _rebuild(cls, path, problem, expected, fix, state):
    error = cls.__new__(cls)
    CheckpointError.__init__(error, path, problem, expected=expected, fix=fix)
    error.__dict__.update(state)
    return error


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The named checkpoint file (or folder) does not exist."""


class NoCheckpointsError(CheckpointError, FileNotFoundError):
    """A checkpoint folder holds no valid checkpoint."""


class CorruptCheckpointError(CheckpointError, ValueError):
    """The file exists but cannot be read: empty, truncated, or not a torch file."""


class NotACheckpointError(CorruptCheckpointError):
    """The file is a readable torch file, but holds no model weights."""


class UnsafeCheckpointError(CheckpointError):
    """The file needs arbitrary unpickling, which is refused unless the user opts in."""


class ArchitectureMismatchError(CheckpointError, ValueError):
    """The checkpoint's weights do not fit the model (names, shapes or dtypes).

    ``diff`` holds the structured comparison (see ``state_dict_diff``).
    """

    def __init__(self, path, problem, *, diff=None, expected=None, fix=None) -> None:
        self.diff = diff
        super().__init__(path, problem, expected=expected, fix=fix)


class CheckpointSaveError(CheckpointError, OSError):
    """A save failed (disk full, read-only folder, ...); earlier checkpoints are intact."""


class ResumeError(CheckpointError, ValueError):
    """Training cannot resume from this checkpoint."""
