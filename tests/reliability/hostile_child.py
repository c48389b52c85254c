"""Run hostile cases (hostile.py) in this process, each with a time limit, and report as JSON.

    python -m tests.reliability.hostile_child ROOT NAME [NAME ...]

For each case: build its folder under ROOT, reset the peak-memory counter, run the case's
operation under ``signal.alarm``, and record how long it took, how much memory it added
at its peak, and what it found (listed names, skip reasons, the error, whether the model
and global state stayed unchanged). Prints one JSON object: name -> result.
"""

from __future__ import annotations

import collections
import json
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

import torch

from tests.reliability.hostile import BUILDERS, RUN_ID, HostileCase, tiny_model
from utils.notebook.panels import render_load_error
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.errors import CheckpointError
from utils.training.engine.loading import load_model_weights
from utils.training.engine.recovery import format_checkpoint_table, scan_checkpoints

TIME_LIMIT_S = 30


class _TimedOut(Exception):
    pass


def _alarm(*_):
    raise _TimedOut()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> bool:
    """Reset VmHWM (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(case: HostileCase) -> dict:
    found: dict = {}
    if case.operation == "list":
        scan = scan_checkpoints(case.folder)
        found["listed"] = [r.name for r in scan.checkpoints]
        found["skipped"] = {p.name: reason for p, reason in scan.skipped}
        found["table"] = format_checkpoint_table(scan.checkpoints, scan.skipped)
    elif case.operation == "save":
        path = save_checkpoint(
            case.folder, tiny_model(), epoch=1, global_step=10**6, metrics={"val_loss": 3.0}, run_id=RUN_ID
        )
        scan = scan_checkpoints(case.folder)
        found["saved"] = path.name
        found["listed"] = [r.name for r in scan.checkpoints]
        found["skipped"] = {p.name: reason for p, reason in scan.skipped}
    else:
        model = tiny_model(seed=5)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            load_model_weights(model, case.path, "cpu")
            found["loaded"] = True
        except CheckpointError as error:
            found["loaded"] = False
            found["error"] = str(error)
            if case.operation == "render":
                found["panel"] = render_load_error(error)
        after = model.state_dict()
        found["unchanged"] = all(torch.equal(before[k], after[k]) for k in before)
        found["listed"] = [r.name for r in scan_checkpoints(case.folder).checkpoints]
    return found


def run_case(root: Path, name: str) -> dict:
    (root / name).mkdir(parents=True)
    try:
        case = BUILDERS[name](root / name)
    except Exception:  # noqa: BLE001 -- a builder's own bug fails its test, not the whole run
        return {"outcome": "the case could not be built", "traceback": traceback.format_exc()[-2000:]}
    counter_attributes = set(vars(collections.Counter))
    resettable = _reset_peak()
    start_rss, started = _rss_mb(), time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    result: dict = {"expect_listed": list(case.expect_listed), "reason": case.reason, "loads": case.loads,
                    "operation": case.operation, "path": case.path.name}  # fmt: skip
    try:
        result.update(_run(case))
        result["outcome"] = "finished"
    except _TimedOut:
        result["outcome"] = "timed out"
    except BaseException as error:  # noqa: BLE001 -- reported to the parent, which fails the test
        result["outcome"] = f"raised {type(error).__name__}: {error}"[:500]
        result["traceback"] = traceback.format_exc()[-2000:]
    finally:
        signal.alarm(0)
    result["seconds"] = time.perf_counter() - started
    result["added_mb"] = (_peak_mb() - start_rss) if resettable else _rss_mb() - start_rss
    result["counter_changed"] = set(vars(collections.Counter)) != counter_attributes
    return result


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    root = Path(argv[0])
    results = {name: run_case(root, name) for name in argv[1:]}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
