"""Copy checkpoint tensors into a model's own tensors: checked first, verified while copying.

The loader promises that a failed load changes nothing. Names, shapes and dtypes are
compared before anything else (``state_dict_diff``); this module adds the last checks
that can still fail on a copy, run before the first byte is written:

* every source tensor is materialised (a view of the memory-mapped file: a missing or
  too-short member fails here, not half-way through the copy);
* every pair of (file dtype, model dtype, model device) is copied once on a one-element
  tensor: a dtype that ``copy_`` cannot convert (a float4 tensor, say) is refused with
  that reason instead of failing after earlier tensors were copied.

The copy itself goes row block by row block (a few megabytes at a time), and each
block is compared bit-for-bit with the file and searched for NaN/Inf right after it is
written, while both are still in the CPU's cache: verification costs little more than
the copy, where separate passes would read the whole model twice more.

The loop runs on one CPU thread. Copies and comparisons are bound by memory bandwidth,
which one core nearly fills, and each of the thousands of small operations would
otherwise start a parallel region that waits for every thread of the pool: on a machine
whose cores are busy with other work (a notebook's kernel beside a data loader, a
shared CI runner) that made loading GPT-2 small ten times slower (benchmarks/bench_loading.py).
The exception is a transposed source (Hugging Face's Conv1D weights): its strided copies are
bound by the CPU, few and long, and run on every thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from .tensor_checks import equal_bits, has_nonfinite
from .text import dtype_name

__all__ = ["CopyJob", "CopyResult", "UncopyableError", "check_copyable", "copy_verified"]

_BLOCK_BYTES = 4 << 20
# A transposed source (Hugging Face's Conv1D weights) is copied 256 target columns -- 256 stored rows,
# 3 MB of GPT-2's file -- at a time. Measured on GPT-2 small's 36 large Conv1D weights read from the
# memory-mapped file, one thread: 258 ms for the copy and 879 ms with the comparison, against 283 and
# 1,248 ms with 32 columns; one whole-tensor copy_ was 2.5x slower than 32 columns, row blocks 4.7x.
# Few, large blocks also keep the number of parallel ops low: on a busy 2-core machine each small op
# waits for its second thread. Unlike the contiguous copies (memory-bound, thousands of small ops),
# these strided copies and comparisons are bound by the CPU and each takes milliseconds, so they run
# on all of torch's threads: on 2 idle cores that halves them (benchmarks/bench_sources.py: Hugging
# Face GPT-2 small against our format, 1.63x -> 1.2x). A few hundred such ops, each milliseconds long,
# lose at most a scheduler slice each when another process holds a core, not the 10x of the small ops.
# (Python threads of one torch thread each, tried instead, gained only 1.3x on 2 idle cores.)
_TRANSPOSE_COLUMNS = 256


@dataclass(frozen=True)
class CopyJob:
    """One model tensor (or its first rows, for a resized tensor) and its source."""

    name: str
    target: torch.Tensor
    source: torch.Tensor


class UncopyableError(ValueError):
    """A source dtype the model's dtype cannot be converted from on the model's device."""

    def __init__(
        self, names: list[str], source: torch.dtype, target: torch.dtype, device: torch.device, why: str
    ):
        self.names = names
        super().__init__(
            f"{len(names)} tensor(s) ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}) are "
            f"{dtype_name(source)} in the file and cannot be converted to the model's "
            f"{dtype_name(target)} on {device} ({why})"
        )


def check_copyable(jobs: Iterable[CopyJob]) -> None:
    """Copy one element for every distinct (source dtype, target dtype, target device).

    Raises:
        UncopyableError: naming the tensors of the first combination that fails.
    """
    groups: dict[tuple, list[str]] = {}
    for job in jobs:
        groups.setdefault((job.source.dtype, job.target.dtype, job.target.device), []).append(job.name)
    for (source, target, device), names in groups.items():
        try:
            probe = torch.zeros(1, dtype=target, device=device)
            probe.copy_(torch.zeros(1, dtype=source))
        except (RuntimeError, TypeError, NotImplementedError) as error:
            why = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
            raise UncopyableError(names, source, target, device, why) from error


@dataclass
class CopyResult:
    """What the copy found: tensors that differ from the file afterwards, and ones holding NaN/Inf."""

    differing: list[str]
    nonfinite: list[str]


def copy_verified(jobs: Iterable[CopyJob], verify: bool) -> CopyResult:
    """Copy every job block by block; compare each block with its source (``verify``) and look
    for NaN/Inf in it right after writing it.
    """
    result = CopyResult([], [])
    threads = torch.get_num_threads()
    with torch.no_grad(), _one_thread():
        for job in jobs:
            same, finite = _copy_blocks(job.target, job.source, verify, threads)
            if not same:
                result.differing.append(job.name)
            if not finite:
                result.nonfinite.append(job.name)
    return result


@contextlib.contextmanager
def _one_thread(threads: int = 1) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _copy_blocks(target: torch.Tensor, source: torch.Tensor, verify: bool, threads: int) -> tuple[bool, bool]:
    if _transposed(target, source):
        return _copy_transposed(target, source, verify, threads)
    if target.dim() == 0 or not target.is_contiguous() or target.shape[0] == 0:
        target.copy_(source)
        return (not verify or equal_bits(target, source)), not has_nonfinite(target)
    row_bytes = max(1, target[0].numel() * target.element_size())
    step = max(1, _BLOCK_BYTES // row_bytes)
    same = finite = True
    for start in range(0, target.shape[0], step):
        block, original = target[start : start + step], source[start : start + step]
        block.copy_(original)
        if verify and same and not equal_bits(block, original):
            same = False
        if finite and has_nonfinite(block):
            finite = False
    return same, finite


def _transposed(target: torch.Tensor, source: torch.Tensor) -> bool:
    """A contiguous 2-D target filled from the transpose of a contiguous 2-D tensor."""
    return (
        target.dim() == 2
        and source.dim() == 2
        and target.is_contiguous()
        and min(source.shape) > 1
        and source.stride() == (1, source.shape[0])
    )


def _copy_transposed(
    target: torch.Tensor, source: torch.Tensor, verify: bool, threads: int
) -> tuple[bool, bool]:
    """Copy in column blocks, each compared right after it is written, while both are in the cache;
    the NaN/Inf scan runs once over the contiguous target (summing strided blocks would cost more
    than the copy). The blocks' strided ops run on ``threads`` torch threads (see above)."""
    same = True
    with _one_thread(threads):
        for start in range(0, target.shape[1], _TRANSPOSE_COLUMNS):
            block, original = (
                target[:, start : start + _TRANSPOSE_COLUMNS],
                source[:, start : start + _TRANSPOSE_COLUMNS],
            )
            block.copy_(original)
            if verify and same and not equal_bits(block, original):
                same = False
    return same, not has_nonfinite(target)
