"""The launcher as tests run it: ``utils.training.launch`` jobs, with the weights written out by rank 0.

    torchrun --standalone --nproc_per_node=2 tests/distributed/launch_child.py OUT_DIR \\
        --job NAME [launch flags] [--job NAME [launch flags] ...]
    python tests/distributed/launch_child.py OUT_DIR --job NAME [launch flags]     # one process

Each job is prepared and trained as ``python -m utils.training.launch`` would (one torchrun
start serves several jobs: starting processes costs more than the tiny runs). For each,
rank 0 writes OUT_DIR/NAME/loaded.pt (the weights right after the resume, before any step)
and OUT_DIR/NAME/final.pt (weights, per-step losses, history, epochs completed, the resume
report). With ``KILL_IN_SAVE=RANK:N`` in the environment, rank RANK kills itself with
SIGKILL in its N-th sharded save, after its shards and its rank file are written and
before rank 0 commits the folder.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from utils.training import launch  # noqa: E402
from utils.training.distributed import sharded_save  # noqa: E402
from utils.training.distributed.setup import full_state_dict, start, stop  # noqa: E402


def _kill_in_save(rank: int, nth: int) -> None:
    original, calls = sharded_save._write_rank_file, []

    def write_then_die(context, temporary, own):
        failure = original(context, temporary, own)
        calls.append(1)
        if context.rank == rank and len(calls) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return failure

    sharded_save._write_rank_file = write_then_die


def _jobs(argv: list[str]) -> list[tuple[str, list[str]]]:
    jobs: list[tuple[str, list[str]]] = []
    for item in argv:
        if item == "--job":
            jobs.append(("", []))
        elif not jobs[-1][0]:
            jobs[-1] = (item, [])
        else:
            jobs[-1][1].append(item)
    return jobs


def _run(name: str, args, context, out: Path) -> None:
    job = launch.prepare(args, dataclasses.replace(context, strategy=args.strategy))
    loaded = full_state_dict(job.model, job.context)
    run = launch.run_job(job)
    final = full_state_dict(job.model, job.context)
    if context.is_main:
        (out / name).mkdir(parents=True, exist_ok=True)
        torch.save({"model": loaded}, out / name / "loaded.pt")
        report = job.resume_state.render() if job.resume_state else ""
        torch.save(
            {"model": final, "step_losses": run.step_losses, "history": run.history,
             "epochs_completed": run.epochs_completed, "report": report},
            out / name / "final.pt",
        )  # fmt: skip


def main() -> None:
    out, jobs = Path(sys.argv[1]), _jobs(sys.argv[2:])
    if os.environ.get("KILL_IN_SAVE"):
        _kill_in_save(*(int(part) for part in os.environ["KILL_IN_SAVE"].split(":")))
    parsed = [(name, launch.build_parser().parse_args(flags)) for name, flags in jobs]
    context = start(parsed[0][1].strategy, parsed[0][1].device)  # one process group for every job
    try:
        with launch._printing(context):
            for name, args in parsed:
                _run(name, args, context, out)
    finally:
        stop(context)


if __name__ == "__main__":
    main()
