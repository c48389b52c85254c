"""The training text: a bundled Tiny Shakespeare excerpt, or the user's own UTF-8 file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_CORPUS_PATH", "CorpusError", "load_corpus"]

DEFAULT_CORPUS_PATH = Path(__file__).resolve().parent / "corpus" / "tiny_shakespeare.txt"


class CorpusError(ValueError):
    """The text file cannot be used for training."""


def load_corpus(path: str | os.PathLike | None = None) -> str:
    """Read a UTF-8 text file; the bundled Tiny Shakespeare when ``path`` is None.

    Args:
        path: a text file; ``~`` is expanded.

    Returns:
        The file's text.

    Raises:
        FileNotFoundError: the file does not exist.
        CorpusError: the path is a folder, the file is empty, or it is not UTF-8.
    """
    file = Path(path).expanduser() if path is not None else DEFAULT_CORPUS_PATH
    fix = "Fix: set DATA_PATH to a UTF-8 text file, or to '' for the bundled Tiny Shakespeare."
    if not file.exists():
        raise FileNotFoundError(f"{file}: training text not found.\n{fix}")
    if file.is_dir():
        raise CorpusError(f"{file}: is a folder, expected a text file.\n{fix}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{file}: not UTF-8 text (byte {error.start} is {error.object[error.start : error.start + 1]!r}).\n"
            "Fix: convert it, e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`, or pick another file."
        ) from error
    if not text.strip():
        raise CorpusError(f"{file}: the file is empty (or only whitespace), expected training text.\n{fix}")
    return text
