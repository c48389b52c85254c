"""Capture and restore every random generator a training run uses.

The captured state holds only tensors, ints, floats, strings, lists and dicts, so a
checkpoint that carries it still loads with ``torch.load(weights_only=True)``.
Restoring never skips a generator silently: the report lists what was restored and
what was missing, and a malformed state raises :class:`ResumeError`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from utils.training.engine.errors import ResumeError

__all__ = ["RNG_SOURCES", "RngRestoreReport", "capture_rng_state", "restore_rng_state"]

RNG_SOURCES = ("torch", "cuda", "python", "numpy")

try:  # numpy is optional for training; its global generator is saved when it is importable
    import numpy as np
except ImportError:  # pragma: no cover - numpy is in requirements.txt
    np = None


@dataclass
class RngRestoreReport:
    """What :func:`restore_rng_state` did: generator names, plus one line per problem."""

    restored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "name: consequence" lines

    @property
    def complete(self) -> bool:
        return not self.missing


def capture_rng_state() -> dict[str, Any]:
    """The current state of torch's CPU and CUDA generators, Python's ``random`` and numpy's.

    Returns:
        ``{"torch": uint8 tensor, "cuda": [uint8 tensor per GPU] (only with CUDA),
        "python": {...}, "numpy": {...}}``.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    version, internal, gauss_next = random.getstate()
    state["python"] = {"version": version, "state": list(internal), "gauss_next": gauss_next}
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        state["numpy"] = {
            "bit_generator": str(name),
            "keys": torch.from_numpy(keys.astype("int64")),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    return state


def restore_rng_state(state: dict[str, Any] | None) -> RngRestoreReport:
    """Put the generators back where :func:`capture_rng_state` found them.

    Args:
        state: a captured state, or None (then every generator is reported missing).

    Returns:
        The report; ``missing`` says, per generator, why it was not restored and what differs.

    Raises:
        ResumeError: a part of the state is present but malformed.
    """
    report = RngRestoreReport()
    if state is None:
        report.missing.append(
            "random generators: none saved; dropout and sampling will differ from the original run"
        )
        return report
    if not isinstance(state, dict):
        raise ResumeError(None, f"rng_state is a {type(state).__name__}, expected a dict of generator states")
    for name, restore in (("torch", _restore_torch), ("cuda", _restore_cuda), ("python", _restore_python)):
        _apply(name, restore, state, report)
    if np is not None:
        _apply("numpy", _restore_numpy, state, report)
    return report


def _apply(name: str, restore, state: dict[str, Any], report: RngRestoreReport) -> None:
    try:
        problem = restore(state.get(name))
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as error:
        raise ResumeError(
            None,
            f"the saved {name} random state is malformed ({type(error).__name__}: {error})",
            expected="the dict written by utils.training.rng.capture_rng_state()",
            fix="resume from another checkpoint, or start with RESUME='none'",
        ) from error
    if problem is None:
        report.restored.append(name)
    elif problem:  # "" means: not used here and not saved, nothing to restore
        report.missing.append(f"{name}: {problem}")


def _restore_torch(value: Any) -> str | None:
    if value is None:
        return "torch CPU generator not saved; dropout on the CPU will differ from the original run"
    torch.set_rng_state(value)
    return None


def _restore_cuda(value: Any) -> str | None:
    available = torch.cuda.is_available()
    if value is None:
        return "CUDA generators not saved; dropout on the GPU will differ" if available else ""
    if not available:
        return f"{len(value)} saved CUDA generator state(s) not restored: no GPU now; dropout will differ"
    # Before CUDA is initialised, set_rng_state is queued, and a queued torch.manual_seed() (which
    # torch replays *last* at initialisation) would overwrite it: initialise first, set now.
    torch.cuda.init()
    count = min(len(value), torch.cuda.device_count())
    for index in range(count):
        torch.cuda.set_rng_state(value[index], index)
    if count < len(value) or count < torch.cuda.device_count():
        return f"{len(value)} CUDA states saved, {torch.cuda.device_count()} GPUs now; restored {count}"
    return None


def _restore_python(value: Any) -> str | None:
    if value is None:
        return "Python's random module state not saved; code using `random` will differ"
    random.setstate((int(value["version"]), tuple(int(v) for v in value["state"]), value["gauss_next"]))
    return None


def _restore_numpy(value: Any) -> str | None:
    if value is None:
        return "numpy's global random state not saved; code using np.random will differ"
    keys = value["keys"].numpy().astype("uint32")
    np.random.set_state(
        (
            value["bit_generator"],
            keys,
            int(value["pos"]),
            int(value["has_gauss"]),
            float(value["cached_gaussian"]),
        )
    )
    return None
