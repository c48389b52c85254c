"""Hostile pickles: objects whose unpickling creates a file, the classic pickle attack."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["make_payload"]


class _Payload:
    """Unpickling this object calls ``func(*args)``: the classic pickle attack."""

    def __init__(self, func: Callable, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def make_payload(sentinel: Path, how: str = "exec") -> _Payload:
    """An object whose unpickling creates ``sentinel`` (by exec'd Python, or by a shell command)."""
    if how == "system":
        return _Payload(os.system, (f"touch '{sentinel}'",))
    return _Payload(exec, (f"open({str(sentinel)!r}, 'w').close()",))
