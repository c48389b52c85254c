"""A training run with background saves and a mirror that hangs half-way through one file, to be killed.

    python tests/reliability/async_child.py LOCAL MIRROR READY --hang write|mirror --at-step K

Trains the tiny preset with a checkpoint after every step (``async_save=True``, the mirror in
MIRROR, retention 1 best + 3 latest). When the background write (``--hang write``) or the
mirror copy (``--hang mirror``) of step K has written half of its file, it creates READY and
sleeps: test_async_kills.py then lists the folders and SIGKILLs this process.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import utils.training.background as background  # noqa: E402
import utils.training.engine.checkpoint as checkpoint_module  # noqa: E402
from tests.reliability.training_setup import load_data, run_training, training_config  # noqa: E402
from utils.training.engine.mirror import copy_with_crc  # noqa: E402
from utils.training.engine.naming import parse_checkpoint_filename  # noqa: E402


def _hang(ready: Path) -> None:
    ready.write_text("hanging")
    while True:
        time.sleep(60)


def _step_of(path) -> int | None:
    parsed = parse_checkpoint_filename(Path(path).name)
    return parsed.global_step if parsed else None


def hang_in_write(step: int, ready: Path) -> None:
    """The background write of ``step`` stops with half of its temporary file written."""
    real = checkpoint_module.atomic_write

    def atomic_write(final_path, write):
        if _step_of(final_path) != step:
            return real(final_path, write)

        def half(file):
            write(file)
            file.truncate(file.tell() // 2)
            file.flush()
            _hang(ready)

        return real(final_path, half)

    checkpoint_module.atomic_write = atomic_write


def hang_in_mirror(step: int, ready: Path) -> None:
    """The mirror copy of ``step`` stops with half of the file copied; training goes on."""

    def copy(source, target, buffer):
        if _step_of(source.name) != step:
            return copy_with_crc(source, target, buffer)
        data = source.read()
        target.write(data[: len(data) // 2])
        target.flush()
        _hang(ready)

    background.Mirror = functools.partial(background.Mirror, copy=copy)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("local", type=Path)
    parser.add_argument("mirror", type=Path)
    parser.add_argument("ready", type=Path)
    parser.add_argument("--hang", choices=["write", "mirror"], required=True)
    parser.add_argument("--at-step", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    (hang_in_write if args.hang == "write" else hang_in_mirror)(args.at_step, args.ready)
    config = training_config(keep_best=1, keep_last=3, async_save=True, mirror_dir=str(args.mirror))
    run_training(args.local, load_data(), config, resume="none")


if __name__ == "__main__":
    main()
