"""Cell 35: extract the session variables from Cell 33's results (or a checkpoint).

The design's appendix reports that the old cell printed nothing when the
variables already existed: it only printed inside ``if name not in globals()``
branches. Here every variable gets a line, always, saying whether it is new,
unchanged or updated, and where its value came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SESSION_VARIABLES", "ExtractedVariable", "SessionReport", "extract_session_variables"]

# name in the notebook -> key in Cell 33's ``results`` dict
SESSION_VARIABLES = {
    "checkpoint_path": "checkpoint_path",
    "checkpoint_dir": "checkpoint_dir",
    "history": "history",
    "train_losses": "train_losses",
    "val_losses": "val_losses",
    "learning_rates": "learning_rates",
    "best_epoch": "best_epoch",
    "best_val_loss": "best_val_loss",
    "epochs": "epochs",
    "checkpoint_config": "config",
}


@dataclass(frozen=True)
class ExtractedVariable:
    """One variable Cell 35 set (or left alone)."""

    name: str
    status: str  # "new" | "unchanged" | "updated" | "missing"
    summary: str
    source: str


@dataclass
class SessionReport:
    """What Cell 35 did, line by line."""

    source: str
    variables: list[ExtractedVariable] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for v in self.variables if v.status == status)

    def lines(self) -> list[str]:
        """The printed report: a header, one line per variable, a totals line."""
        icons = {"new": "🆕", "unchanged": "🟰", "updated": "🔄", "missing": "❔"}
        out = [f"📦 Source: {self.source}", ""]
        width = max((len(v.name) for v in self.variables), default=8)
        origin = max((len(v.source) for v in self.variables), default=8)
        for var in self.variables:
            out.append(
                f"   {icons[var.status]} {var.name:<{width}}  {var.status:<9}  {var.source:<{origin}}  {var.summary}"
            )
        out.append("")
        out.append(
            f"   {self.count('new')} new, {self.count('updated')} updated, "
            f"{self.count('unchanged')} already present and unchanged, {self.count('missing')} missing"
        )
        return out


def _summary(value: Any) -> str:
    """A one-line description of a value: short values in full, lists by length and ends."""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        if value and all(isinstance(v, (int, float)) for v in value):
            return f"list of {len(value)}: {value[0]:.4g} ... {value[-1]:.4g}"
        return f"list of {len(value)}"
    if isinstance(value, dict):
        keys = ", ".join(list(map(str, value))[:4])
        return f"dict with {len(value)} keys ({keys}{', ...' if len(value) > 4 else ''})"
    text = str(value)
    if len(text) <= 70:
        return text
    name = Path(text).name  # a long path: its file name says which checkpoint
    return f".../{name}" if 0 < len(name) <= 66 else text[:67] + "..."


def _same(old: Any, new: Any) -> bool:
    """Equality that treats NaN as equal to NaN and never raises."""
    try:
        if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
            return True
        return bool(old == new)
    except Exception:  # e.g. tensors with ambiguous truth values: treat as different
        return False


def _recovered(folder: Any, recover: Callable) -> dict | None:
    try:
        return recover(folder)
    except (FileNotFoundError, ValueError, OSError):  # NoCheckpointsError is a FileNotFoundError
        return None


def _find_results(namespace: MutableMapping[str, Any], recover: Callable) -> tuple[dict, str] | None:
    """Cell 33's ``results``; else the folder of the checkpoint Cell 34 loaded; else CHECKPOINT_DIR."""
    if isinstance(namespace.get("results"), dict):
        return namespace["results"], "Cell 33 (Checkpoint Recovery): `results`"
    loaded = getattr(namespace.get("load_report"), "path", None)
    if loaded:
        results = _recovered(Path(loaded).parent, recover)
        if results is not None:
            # the file Cell 34 loaded, which may not be the folder's best
            results = {**results, "checkpoint_path": str(loaded)}
            return results, f"the checkpoint loaded by Cell 34 ({Path(loaded).name}) and its folder"
    folder = namespace.get("CHECKPOINT_DIR")
    results = _recovered(folder, recover) if folder else None
    if results is not None:
        return results, f"the checkpoints in {folder} (Cell 33 was not run)"
    return None


def extract_session_variables(
    namespace: MutableMapping[str, Any],
    results: dict | None = None,
    *,
    recover: Callable | None = None,
) -> SessionReport:
    """Set the session variables in ``namespace`` and report each one.

    Args:
        namespace: the notebook's globals().
        results: a results dict to use instead of looking for one. By default:
            Cell 33's ``results``; else the folder of the checkpoint Cell 34 loaded
            (``load_report``); else the checkpoints in ``CHECKPOINT_DIR``.
        recover: the recovery function (default: recover_training_results); tests pass fakes.

    Returns:
        A report with one entry per variable in SESSION_VARIABLES, also when nothing
        changed and when nothing could be found.
    """
    if recover is None:
        from utils.training.engine.recovery import recover_training_results as recover
    found = (results, "the `results` passed in") if results is not None else _find_results(namespace, recover)
    if found is None:
        report = SessionReport(
            "nothing found: no `results` (run Cell 33) and no checkpoints in CHECKPOINT_DIR"
        )
        report.variables = [ExtractedVariable(n, "missing", "not set", "-") for n in SESSION_VARIABLES]
        return report
    results, source = found
    report = SessionReport(source)
    for name, key in SESSION_VARIABLES.items():
        report.variables.append(_set_variable(namespace, name, results, key))
    report.variables.append(_loaded_checkpoint(namespace))
    return report


def _loaded_checkpoint(namespace: MutableMapping[str, Any]) -> ExtractedVariable:
    """``loaded_checkpoint``: the file whose weights ``model`` holds (Cell 34), which may not be the best."""
    path = getattr(namespace.get("load_report"), "path", None)
    if path is None:
        return ExtractedVariable(
            "loaded_checkpoint", "missing", "Cell 34 did not load weights", "load_report"
        )
    return _set_variable(
        namespace, "loaded_checkpoint", {"path": str(path)}, "path", origin="Cell 34's load_report"
    )


def _set_variable(
    namespace: MutableMapping[str, Any], name: str, results: dict, key: str, origin: str | None = None
) -> ExtractedVariable:
    origin = origin or f"results[{key!r}]"
    if key not in results:
        return ExtractedVariable(name, "missing", f"results has no {key!r}", origin)
    value = results[key]
    if name not in namespace:
        status = "new"
    else:
        status = "unchanged" if _same(namespace[name], value) else "updated"
    namespace[name] = value
    return ExtractedVariable(name, status, _summary(value), origin)
