"""Cells 31 and 41: the run manifest and the exported weights (safetensors, Hugging Face)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from utils.training.engine.prefixes import unwrap_model

__all__ = ["settings_from", "write_run_manifest", "export_safetensors", "export_hugging_face_lines"]


def settings_from(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's settings: UPPER_CASE names holding plain values (str, int, float, bool, None)."""
    return {
        name: value
        for name, value in namespace.items()
        if name.isupper()
        and not name.startswith("_")
        and isinstance(value, (str, int, float, bool, type(None)))
    }


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_run_manifest(path: str | os.PathLike, settings: Mapping[str, Any], **facts: Any) -> Path:
    """Write a JSON file recording this run: settings, versions, code commit and extra facts.

    Args:
        path: the file to write (its folder is created).
        settings: the notebook's settings (see :func:`settings_from`).
        facts: anything else worth keeping (device, preset, resume source, ...); str() for non-JSON values.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "written": _dt.datetime.now().isoformat(timespec="seconds"),
        "settings": dict(settings),
        "facts": {
            key: value if isinstance(value, (int, float, bool, type(None))) else str(value)
            for key, value in facts.items()
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "code_commit": _git_commit(Path.cwd()),
    }
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def export_safetensors(
    model: torch.nn.Module, folder: str | os.PathLike, *, name: str = "model"
) -> dict[str, Any]:
    """Write the model's weights as ``<name>.safetensors`` plus ``<name>.config.json``, and check them.

    ``lm_head.weight`` is tied to ``transformer.wte.weight``; ``safetensors.torch.save_model``
    stores the shared tensor once and ``load_model`` re-ties it. The file is read
    back into a fresh model and every tensor compared.

    Returns:
        ``{"weights": Path, "config": Path, "size_bytes": int, "tensors": int, "verified": bool}``.
    """
    from safetensors.torch import load_model, save_model

    base = unwrap_model(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights, config = folder / f"{name}.safetensors", folder / f"{name}.config.json"
    save_model(base, str(weights), metadata={"format": "pt"})
    config.write_text(json.dumps(base.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    fresh = type(base)(base.config)
    load_model(fresh, str(weights), device="cpu")
    reference = {k: v.detach().cpu() for k, v in base.state_dict().items()}
    verified = all(torch.equal(reference[k], v) for k, v in fresh.state_dict().items())
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        tensors = len(list(handle.keys()))
    return {
        "weights": weights,
        "config": config,
        "size_bytes": weights.stat().st_size,
        "tensors": tensors,
        "verified": verified,
    }


def export_hugging_face_lines(model: torch.nn.Module, folder: str | os.PathLike) -> list[str]:
    """Write ``model`` as a Hugging Face GPT-2 folder (``engine.hf_export``) and say how to use it.

    Returns:
        Lines for Cell 41: the folder, its activation, the read-back check, the transformers calls.
    """
    from utils.training.engine.hf_export import export_hugging_face

    exported = export_hugging_face(model, folder)
    mark = "✅" if exported.verified else "❌"
    return [
        f"🤗 {exported.folder}: config.json + model.safetensors ({exported.tensors} tensors, "
        f"activation_function {exported.config['activation_function']!r})",
        f"{mark} Read back as Hugging Face GPT-2 into a fresh model: every tensor identical",
        f"   transformers: GPT2LMHeadModel.from_pretrained({str(exported.folder)!r}); then .push_to_hub(name)",
    ]
