"""copying: tensors copied block by block and verified; transposed sources (Conv1D weights) too."""

from __future__ import annotations

import math

import torch

from utils.training.engine.copying import CopyJob, copy_verified


class TestCopyVerified:
    def test_a_transposed_source_lands_exactly_and_is_verified(self):
        stored = torch.randn(40, 70)  # a Conv1D weight as Hugging Face stores it: (in, out)
        target = torch.zeros(70, 40)
        result = copy_verified([CopyJob("w", target, stored.t())], verify=True)
        assert torch.equal(target, stored.t()) and result.differing == [] and result.nonfinite == []

    def test_nan_in_a_transposed_source_is_reported(self):
        stored = torch.randn(40, 70)
        stored[39, 69] = math.nan
        result = copy_verified([CopyJob("w", torch.zeros(70, 40), stored.t())], verify=True)
        assert result.nonfinite == ["w"]
