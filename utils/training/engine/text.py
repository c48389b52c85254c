"""Text from a file, made safe to print: control characters escaped, length bounded.

File names, pickle global names, config strings and timestamps come from files a user
may not have written. Printed raw, a newline forges a table row and an ESC sequence
clears the screen or recolours it. Everything the engine and the notebook show that a
file chose goes through :func:`safe_text` (or a ``repr`` bounded by :func:`short_repr`).
"""

from __future__ import annotations

import reprlib
import unicodedata
from typing import Any

__all__ = ["dtype_name", "first_line", "json_type", "safe_text", "short_repr"]

# Control (Cc), format (Cf: bidi overrides, zero-width), surrogate (Cs: undecodable bytes in a
# file name) and line/paragraph separators (Zl, Zp) never reach the terminal as they are.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdict = 8
_REPR.maxlevel = 3


def safe_text(value: Any, limit: int | None = 300) -> str:
    """``str(value)`` with every unsafe character escaped (``\\x1b``, ``\\n``, ``\\u202e``).

    Args:
        value: anything; usually a file name or a string read from a file.
        limit: the most characters kept before ``…`` (None: no limit).
    """
    text = str(value)
    if text.isprintable() and (limit is None or len(text) <= limit):
        return text  # the common case: nothing to do
    out = []
    for char in text if limit is None else text[: limit + 1]:
        if unicodedata.category(char) in _UNSAFE_CATEGORIES:
            out.append(_NAMED.get(char) or _escape(char))
        else:
            out.append(char)
    escaped = "".join(out)
    if limit is not None and (len(text) > limit or len(escaped) > limit):
        return escaped[:limit] + "…"
    return escaped


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def short_repr(value: Any) -> str:
    """A bounded ``repr`` (long strings, big or deeply nested containers abbreviated with ``...``).

    Never walks more than a few levels and items, so a config holding a huge shared
    structure prints in microseconds; the result holds no raw control characters.
    """
    return safe_text(_REPR.repr(value), limit=None)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type ("object", "array", "string", ...), for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-blank line of an exception's message, cut to ``limit`` (its type when blank).

    torch's errors run to many lines (C++ frames, hints); a panel quotes one.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]


def dtype_name(dtype: Any) -> str:
    """``float32`` for ``torch.float32``: how a dtype is named in every message."""
    return str(dtype).replace("torch.", "")
