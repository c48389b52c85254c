"""The checkpoint engine: one safe format, atomic saves, instant listing, recovery.

Public API (docs/checkpoint-format.md describes the files)::

    from utils.training.engine import save_checkpoint, list_checkpoints, load_model_weights

Names are imported lazily (PEP 562) from the module listed in ``_EXPORTS``:
importing the package stays cheap, and ``python -m
utils.training.engine.recovery`` runs without the "found in sys.modules"
warning that an eager import of ``recovery`` here would cause. To export a
new name, add one line to ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS = {
    # saving
    "RetentionPolicy": "checkpoint",
    "save_checkpoint": "checkpoint",
    # reading without weights
    "CheckpointRecord": "record",
    "KINDS": "record",
    "read_checkpoint_metadata": "metadata",
    "open_checkpoint": "sources",
    "CheckpointInfo": "recovery",
    "ScanResult": "recovery",
    "list_checkpoints": "recovery",
    "scan_checkpoints": "recovery",
    "latest_checkpoint": "recovery",
    "recover_training_results": "recovery",
    "results_from_scan": "recovery",
    "newest": "recovery",
    "format_checkpoint_table": "recovery",
    # loading weights
    "build_model_from_checkpoint": "build",
    "LoadReport": "loading",
    "ModelMoveError": "loading",
    "load_model_weights": "loading",
    "resolve_device": "devices",
    "StateDictDiff": "state_dict_diff",
    "compare_state_dicts": "state_dict_diff",
    "config_differences": "state_dict_diff",
    "rebuild_hint": "state_dict_diff",
    # format and names
    "FORMAT_VERSION": "format",
    "METADATA_RECORD": "format",
    "build_checkpoint": "format",
    "checkpoint_kind": "format",
    "model_state_of": "format",
    "checkpoint_filename": "naming",
    "parse_checkpoint_filename": "naming",
    "is_temporary_file": "naming",
    "strip_wrapper_prefixes": "prefixes",
    "unwrap_model": "prefixes",
    "safe_text": "text",
    # errors
    "CheckpointError": "errors",
    "CheckpointNotFoundError": "errors",
    "NoCheckpointsError": "errors",
    "CorruptCheckpointError": "errors",
    "NotACheckpointError": "errors",
    "UnsafeCheckpointError": "errors",
    "ArchitectureMismatchError": "errors",
    "CheckpointSaveError": "errors",
    "ResumeError": "errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
