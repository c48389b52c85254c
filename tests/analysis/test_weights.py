"""_weights.open_checkpoint_weights: the package's one reader of checkpoint files."""

from __future__ import annotations

import pytest
import torch

from utils.training.analysis._weights import CheckpointWeights, open_checkpoint_weights
from utils.training.engine.errors import CheckpointNotFoundError, NotACheckpointError
from utils.training.engine.sources import TensorSpec, WeightSet

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
            NotACheckpointError,
            match=r"meta\.pt: is a PyTorch file, but holds a dict with keys \['epoch'\], not model",
        ):
            with open_checkpoint_weights(tmp_path / "meta.pt"):
                pass

    def test_missing_file(self, tmp_path):
        with pytest.raises(CheckpointNotFoundError, match="gone.pt: does not exist"):
            with open_checkpoint_weights(tmp_path / "gone.pt"):
                pass


class TestRelease:
    def test_a_released_mapped_tensor_reads_the_same_values_again(self, tmp_path):
        big = torch.randn(300_000)  # many pages
        torch.save({"w": big}, tmp_path / "big.pt")
        with open_checkpoint_weights(tmp_path / "big.pt") as weights:
            tensor = weights["w"]
            assert torch.equal(tensor, big)  # maps every page
            assert weights._file_mappings()  # the file is mapped: release acts
            weights.release(tensor, 0, tensor.numel())
            assert torch.equal(tensor, big)  # mapped again from the file

    def test_tensors_in_ordinary_memory_are_never_released(self, tmp_path):
        tensor = torch.ones(300_000)
        torch.save({"w": tensor}, tmp_path / "file.pt")  # a file, but the tensor is not a view of it
        spec = {"w": TensorSpec((300_000,), torch.float32)}
        weights = CheckpointWeights(WeightSet(spec, lambda name: tensor), {"w": "w"}, tmp_path / "file.pt")
        weights.release(tensor, 0, tensor.numel())
        assert bool((tensor == 1).all())  # dropping anonymous pages would have zeroed them

    def test_an_old_non_zip_file_is_read_into_memory_and_never_released(self, tmp_path):
        big = torch.randn(300_000)
        torch.save({"w": big}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
        with open_checkpoint_weights(tmp_path / "old.pt") as weights:
            tensor = weights["w"]
            weights.release(tensor, 0, tensor.numel())
            assert torch.equal(tensor, big)
