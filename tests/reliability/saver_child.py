"""A training run that saves after every step with the default retention, until it is killed.

    python tests/reliability/saver_child.py FOLDER

Used by test_kill_and_concurrency.py: another process lists and loads the folder meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.reliability.training_setup import load_data, run_training, training_config  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    # keep_best=1, keep_last=2: the notebook's default, so files are deleted while the other process reads
    run_training(Path(sys.argv[1]), load_data(), training_config(keep_best=1, keep_last=2), resume="none")
