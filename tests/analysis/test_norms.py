"""norms.distances_and_norm: the same numbers as a direct computation, piece by piece."""

from __future__ import annotations

import pytest
import torch

from utils.training.analysis.norms import distances_and_norm


class TestDistancesAndNorm:
    def test_equals_direct_computation_across_pieces(self):
        generator = torch.Generator().manual_seed(0)
        start = torch.randn(37, 11, generator=generator)
        ends = [start + torch.randn(37, 11, generator=generator) * s for s in (0.1, 1.0)]
        distances, norm = distances_and_norm(start, ends, piece=50)  # 407 elements: 9 pieces
        direct = [torch.linalg.vector_norm((e - start).double()).item() for e in ends]
        assert distances == pytest.approx(direct, rel=1e-6)
        assert norm == pytest.approx(torch.linalg.vector_norm(start.double()).item(), rel=1e-6)

    def test_other_dtype_is_converted_to_the_starts(self):
        start = torch.ones(4)
        distances, norm = distances_and_norm(start, [torch.full((4,), 3.0, dtype=torch.bfloat16)])
        assert distances == [4.0] and norm == 2.0

    def test_half_precision_is_summed_in_float32(self):
        generator = torch.Generator().manual_seed(1)
        start = torch.randn(5000, generator=generator).bfloat16()
        end = (start.float() + 0.01 * torch.randn(5000, generator=generator)).bfloat16()
        [distance], norm = distances_and_norm(start, [end])
        assert distance == pytest.approx(
            torch.linalg.vector_norm(end.double() - start.double()).item(), rel=1e-5
        )
        assert norm == pytest.approx(torch.linalg.vector_norm(start.double()).item(), rel=1e-5)

    def test_no_ends_gives_the_norm(self):
        assert distances_and_norm(torch.tensor([3.0, 4.0]), []) == ([], 5.0)

    def test_shape_mismatch_raises(self):
        with pytest.raises(ValueError, match=r"shapes differ: \(2,\) and \(3,\)"):
            distances_and_norm(torch.zeros(2), [torch.zeros(3)])
