"""Where the notebook runs: runtime report, device and preset choice, Google Drive.

Cells 2, 4 and 5 call these. Everything works the same in Colab and headless;
what only Colab can do (mounting Drive) says so in one line elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "RuntimeReport",
    "runtime_report",
    "is_colab",
    "resolve_preset",
    "DriveChoice",
    "use_drive",
    "seed_everything",
]

GIB = 1024**3
# The preset a GPU gets when MODEL_PRESET is "auto"; a CPU gets the tiny one.
GPU_PRESET = "gpt2"
CPU_PRESET = "tiny"
DEFAULT_DRIVE_ROOT = "/content/drive"


def is_colab() -> bool:
    """True inside a Google Colab runtime."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # no "google" package at all
        return False


def _total_ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return None


@dataclass(frozen=True)
class RuntimeReport:
    """What this runtime offers, as Cell 2 prints it."""

    python: str
    torch: str
    platform: str
    colab: bool
    cpu_count: int
    ram_bytes: int | None
    disk_free_bytes: int
    cuda: bool
    gpu_name: str | None
    gpu_memory_bytes: int | None
    bf16: bool

    def lines(self) -> list[str]:
        """Human-readable lines, one fact each."""
        ram = f"{self.ram_bytes / GIB:.1f} GiB" if self.ram_bytes else "unknown"
        lines = [
            f"🐍 Python {self.python} | PyTorch {self.torch} | {self.platform}",
            f"☁️  Colab: {'yes' if self.colab else 'no (headless or local Jupyter)'}",
            f"🧮 CPU cores: {self.cpu_count} | RAM: {ram} | free disk here: {self.disk_free_bytes / GIB:.1f} GiB",
        ]
        if self.cuda:
            memory = (self.gpu_memory_bytes or 0) / GIB
            lines.append(
                f"🚀 GPU: {self.gpu_name} ({memory:.1f} GiB) | bfloat16: {'yes' if self.bf16 else 'no'}"
            )
        else:
            lines.append("🐢 GPU: none -- training runs on the CPU (use the tiny preset)")
            if self.colab:
                lines.append("   💡 Runtime > Change runtime type > GPU, then run the notebook again")
        return lines


def runtime_report(path: str | os.PathLike = ".") -> RuntimeReport:
    """Collect the facts about this runtime (no side effects).

    Args:
        path: the folder whose free disk space is reported.
    """
    cuda = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if cuda else None
    return RuntimeReport(
        python=platform.python_version(),
        torch=torch.__version__,
        platform=f"{platform.system()} {platform.machine()}",
        colab=is_colab(),
        cpu_count=os.cpu_count() or 1,
        ram_bytes=_total_ram_bytes(),
        disk_free_bytes=shutil.disk_usage(path).free,
        cuda=cuda,
        gpu_name=props.name if props else None,
        gpu_memory_bytes=props.total_memory if props else None,
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
    )


def resolve_preset(setting: str, device: torch.device) -> tuple[str, str]:
    """Turn MODEL_PRESET into a preset name and the reason it was chosen.

    Returns:
        (preset, reason): "auto" becomes "gpt2" on a GPU and "tiny" on a CPU.
    """
    name = (setting or "auto").strip()
    if name != "auto":
        return name, "set in the parameters cell"
    if device.type == "cuda":
        return GPU_PRESET, "auto: a GPU is available, so the full GPT-2 small model"
    return CPU_PRESET, "auto: no GPU, so the tiny model that trains in minutes on a CPU"


@dataclass(frozen=True)
class DriveChoice:
    """Where checkpoints, their mirror and outputs go after the Drive cell, and why.

    ``checkpoint_dir`` is where training writes (the fast local disk); ``mirror_dir`` the
    folder every checkpoint is copied to in the background (Drive, or Cell 3's MIRROR_DIR),
    None without one.
    """

    checkpoint_dir: str
    output_dir: str
    on_drive: bool
    message: str
    mirror_dir: str | None = None


def use_drive(
    enabled: bool,
    checkpoint_dir: str,
    output_dir: str,
    drive_folder: str = "MyDrive/gpt-checkpoints",
    *,
    mirror_dir: str | None = None,
    colab: bool | None = None,
    mount: Callable[[str], None] | None = None,
    drive_root: str = DEFAULT_DRIVE_ROOT,
) -> DriveChoice:
    """Mount Google Drive when asked and possible; checkpoints stay local first, mirrored to Drive.

    The Colab VM's disk is wiped when the runtime is recycled; Drive survives it, but it is
    slow, and a disconnect in the middle of a write to it is common. So training writes to
    the local disk (``checkpoint_dir``, unchanged) and each finished checkpoint is copied to
    the Drive folder in the background (``mirror_dir``); outputs go to Drive directly.

    Args:
        enabled: the USE_DRIVE setting.
        checkpoint_dir, output_dir: the current folders (the output folder moves to Drive).
        drive_folder: folder inside the mounted Drive, e.g. "MyDrive/gpt-checkpoints".
        mirror_dir: the MIRROR_DIR setting: a mirror folder of the user's choice ("" or None:
            none, or, with Drive, ``<drive_folder>/<name of checkpoint_dir>``).
        colab: override the Colab detection (tests).
        mount: the function that mounts Drive at ``drive_root`` (default: google.colab.drive.mount).
    """
    colab = is_colab() if colab is None else colab
    mirror = str(mirror_dir).strip() if mirror_dir else None
    if not enabled or not colab:
        if enabled:
            lead = f"ℹ️  USE_DRIVE is on, but this is not Colab: nothing to mount; checkpoints stay in {checkpoint_dir}"
        else:
            where = "lost when the Colab runtime is recycled" if colab else "on this machine's disk"
            lead = f"💾 Drive not used: checkpoints in {checkpoint_dir} ({where})"
        tail = f"\n☁️  Mirror: each checkpoint is also copied to {mirror} in the background" if mirror else ""
        return DriveChoice(checkpoint_dir, output_dir, False, lead + tail, mirror)
    if mount is None:
        from google.colab import drive  # only importable inside Colab

        mount = drive.mount
    mount(drive_root)
    base = Path(drive_root) / drive_folder
    mirror = mirror or str(base / Path(checkpoint_dir).name)
    out = base / Path(output_dir).name
    Path(mirror).mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    message = (
        f"☁️  Drive mounted. Checkpoints are written to the local disk first: {checkpoint_dir} (fast; gone "
        f"when the runtime disconnects)\n   and copied in the background to {mirror} (survives a disconnect; "
        f"only complete, verified copies appear there).\n   Outputs (plots, manifest, exported weights): {out}"
    )
    return DriveChoice(checkpoint_dir, str(out), True, message, mirror)


def seed_everything(seed: int) -> list[str]:
    """Seed Python's ``random``, numpy and torch (CPU and every GPU) with ``seed``.

    The data order does not depend on these (it comes from the seed given to
    EpochBatches); they drive weight initialisation and dropout.

    Returns:
        The names of the generators seeded.
    """
    import random

    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"SEED must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return ["python random", "numpy", "torch CPU"] + (["torch CUDA"] if torch.cuda.is_available() else [])
