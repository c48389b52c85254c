#!/usr/bin/env python3
"""The project's three commands; each sets itself up on a machine with only Python 3.

    python3 tasks.py run     # the whole notebook, headless on CPU -> outputs/
    python3 tasks.py test    # linter, unit tests, notebook tests
    python3 tasks.py setup   # only create the environment

Each creates ``.venv`` (once) and installs requirements-dev.txt into it. The CPU
build of torch is pinned here, not in requirements.txt, so that Colab keeps
the torch it brings.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
OUTPUTS = ROOT / "outputs"
# A CPU wheel of this version lies on the development machines' disk; elsewhere
# pip fetches it from PyPI.
TORCH_PIN = "torch==2.13.0"
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(*args: str | os.PathLike, **kwargs) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, **kwargs)


def ensure_environment() -> Path:
    """Create .venv and install the requirements, unless they are unchanged since last time."""
    python = _venv_python()
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256(TORCH_PIN.encode())
    for name in REQUIREMENTS:
        digest.update((ROOT / name).read_bytes())
    stamp = VENV / ".requirements.sha256"
    if not stamp.exists() or stamp.read_text() != digest.hexdigest():
        pip = (python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
        _run(*pip, TORCH_PIN)
        _run(*pip, "-r", "requirements-dev.txt")
        stamp.write_text(digest.hexdigest())
    return python


def run_notebook(python: Path, extra: list[str]) -> None:
    """Execute training.ipynb top to bottom with the tiny preset on CPU."""
    OUTPUTS.mkdir(exist_ok=True)
    checkpoints = OUTPUTS / "checkpoints"
    if checkpoints.exists():  # a new run each time: retention never prunes another run's files
        shutil.rmtree(checkpoints)
        print(f"Removed the previous run's {checkpoints}")
    executed = OUTPUTS / "training.executed.ipynb"
    _run(
        python, "-m", "papermill", "training.ipynb", executed,
        "--cwd", ROOT, "--log-output", "--progress-bar",
        "-p", "MODEL_PRESET", "tiny",
        "-p", "EPOCHS", "20",
        "-p", "DEVICE", "cpu",
        "-p", "CHECKPOINT_DIR", str(checkpoints),
        "-p", "OUTPUT_DIR", str(OUTPUTS),
        *extra,
    )  # fmt: skip
    print(f"\nExecuted notebook: {executed}\nCheckpoints and plots: {OUTPUTS}")


def run_tests(python: Path, extra: list[str]) -> None:
    _run(python, "-m", "ruff", "check", ".")
    _run(python, "-m", "ruff", "format", "--check", ".")
    _run(python, "-m", "pytest", *extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("run", "test", "setup"))
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="passed on to papermill / pytest")
    args = parser.parse_args(argv)
    python = ensure_environment()
    if args.command == "run":
        run_notebook(python, args.extra)
    elif args.command == "test":
        run_tests(python, args.extra)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)
