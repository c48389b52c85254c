"""_weights.open_checkpoint_weights: the package's one reader of checkpoint files."""

from __future__ import annotations

import pytest
import torch

from utils.training.analysis._weights import open_checkpoint_weights
from utils.training.engine.errors import CheckpointNotFoundError, NotACheckpointError

from .conftest import save


class TestOpenCheckpointWeights:
    def test_full_file_each_tied_tensor_once(self, tmp_path, model):
        path = save(tmp_path, model, 0)
        with open_checkpoint_weights(path) as weights:
            assert list(weights) == [name for name, _ in model.named_parameters()]  # lm_head tied to wte
            assert all(torch.equal(weights[n], p) for n, p in model.named_parameters())

    def test_wrapper_prefixes_and_integer_buffers_removed(self, tmp_path, model):
        state = {f"module.{k}": v for k, v in model.state_dict().items()}
        state["module.step_count"] = torch.tensor(3)
        torch.save(state, tmp_path / "bare.pt")
        with open_checkpoint_weights(tmp_path / "bare.pt") as weights:
            assert "transformer.wte.weight" in weights and "step_count" not in weights

    def test_file_without_weights(self, tmp_path):
        torch.save({"epoch": 3}, tmp_path / "meta.pt")
        with pytest.raises(
            NotACheckpointError, match=r"meta\.pt: holds a dict with keys \['epoch'\], not model"
        ):
            with open_checkpoint_weights(tmp_path / "meta.pt"):
                pass

    def test_missing_file(self, tmp_path):
        with pytest.raises(CheckpointNotFoundError, match="gone.pt: does not exist"):
            with open_checkpoint_weights(tmp_path / "gone.pt"):
                pass
