"""Figures the reliability tests measure, printed in one block at the end of the pytest run.

``pytest tests/reliability`` ends with a "reliability figures" section (see conftest.py):
how many inputs, faults and fuzz examples ran, and what happened to them. docs/reliability.md
quotes these figures.
"""

from __future__ import annotations

import collections

__all__ = ["FIGURES", "count", "note"]

# section -> {label: value}
FIGURES: dict[str, dict[str, object]] = collections.defaultdict(dict)


def note(section: str, label: str, value: object) -> None:
    """Record one figure (the last value wins)."""
    FIGURES[section][label] = value


def count(section: str, label: str, amount: int = 1) -> None:
    """Add to a counted figure."""
    FIGURES[section][label] = int(FIGURES[section].get(label, 0)) + amount
