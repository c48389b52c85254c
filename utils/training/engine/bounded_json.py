"""JSON from a file, parsed only when its size in objects fits the job it is read for.

A byte cap alone does not bound what ``json.loads`` builds: 8 MB of ``{},{},...`` is
2.7 million dicts (about 180 MB), 60 MB of them over a gigabyte. So before parsing,
the containers (``{`` and ``[``) and the items (``,``) are counted -- two passes of
``bytes.count``, milliseconds for megabytes -- against a budget sized to what the file
holds: a safetensors header has about three containers per tensor, a ``config.json`` a
few dozen. Braces and commas inside strings count too: the estimate only errs high, so
a file within budget always parses within it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["JsonBudget", "JsonRefused", "json_type", "parse_bounded_json"]


@dataclass(frozen=True)
class JsonBudget:
    """The most containers (objects + arrays) and items (about one per comma) a file may hold."""

    containers: int
    items: int


class JsonRefused(ValueError):
    """The text is over its budget; ``str()`` is one sentence starting with ``refused:``."""


def parse_bounded_json(data: bytes, budget: JsonBudget, what: str) -> Any:
    """``json.loads(data)``, after checking the counts against ``budget``.

    Args:
        data: the file's bytes (already capped in size by the caller).
        budget: the limits for this kind of file.
        what: what the text is, for the refusal (e.g. ``"a safetensors header"``).

    Raises:
        JsonRefused: more containers or items than the budget allows (nothing was parsed).
        ValueError: not UTF-8, not JSON, or nested too deeply.
    """
    containers = data.count(b"{") + data.count(b"[")
    if containers > budget.containers:
        raise JsonRefused(
            f"refused: {what} holds about {containers:,} JSON objects and lists, more than the "
            f"{budget.containers:,} such a file needs"
        )
    items = data.count(b",") + 1
    if items > budget.items:
        raise JsonRefused(
            f"refused: {what} holds about {items:,} JSON values, more than the {budget.items:,} such a file needs"
        )
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type ("object", "array", "string", ...), for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
