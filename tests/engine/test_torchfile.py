"""torch files read without torch.load: every dtype, views, sparse tensors, bounds of the storage."""

from __future__ import annotations

import warnings

import pytest
import torch

from utils.training.engine.loading import load_model_weights
from utils.training.engine.sources import open_checkpoint

# Every dtype a checkpoint may hold; torch pickles the newer ones (uint16..64, float8, complex32)
# with an untyped storage counted in bytes and the dtype beside it.
DTYPES = [
    torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8, torch.int16,
    torch.int32, torch.int64, torch.bool, torch.uint16, torch.uint32, torch.uint64, torch.float8_e4m3fn,
    torch.float8_e5m2, torch.float8_e4m3fnuz, torch.complex64, torch.complex32,
]  # fmt: skip


def _as(dtype: torch.dtype) -> torch.Tensor:
    base = torch.arange(1, 13, dtype=torch.float32).reshape(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex32 is "experimental"
        return (base.to(torch.complex64) if dtype.is_complex else base).to(dtype)


class TestEveryDtype:
    @pytest.mark.parametrize("dtype", DTYPES, ids=str)
    def test_bits_equal_torch_load(self, tmp_path, dtype):
        path = tmp_path / "x.pt"
        torch.save({"w": _as(dtype)[:, 1:]}, path)  # a strided view with an offset
        expected = torch.load(path, weights_only=True)["w"]
        with open_checkpoint(path) as checkpoint, checkpoint.weights() as weights:
            found = weights.tensor("w")
            assert found.dtype == expected.dtype and found.shape == expected.shape
            assert torch.equal(found.contiguous().view(torch.uint8), expected.contiguous().view(torch.uint8))

    def test_float8_weights_load_into_a_float32_model_with_their_values(self, tmp_path):
        model = torch.nn.Linear(4, 3, bias=False)
        stored = torch.tensor([[0.5, 1.0, 1.5, 2.0]] * 3).to(torch.float8_e4m3fn)
        torch.save({"weight": stored}, tmp_path / "fp8.pt")
        report = load_model_weights(model, tmp_path / "fp8.pt", device="cpu")
        assert torch.equal(model.weight, stored.float()) and report.verified


class TestSparse:
    def test_weights_are_densified_for_the_model(self, tmp_path):
        model = torch.nn.Linear(3, 2)
        state = {"weight": torch.eye(2, 3).to_sparse(), "bias": torch.zeros(2)}
        torch.save(state, tmp_path / "s.pt")
        load_model_weights(model, tmp_path / "s.pt", device="cpu")
        assert torch.equal(model.weight, torch.eye(2, 3))

    def test_a_training_state_keeps_them_sparse(self, tmp_path):
        """An optimizer's sparse state of 2^14 x 2^14 would be a gigabyte dense."""
        big = torch.sparse_coo_tensor(torch.tensor([[1], [2]]), torch.tensor([3.0]), (16384, 16384))
        torch.save(
            {"model_state_dict": {"w": torch.ones(1)}, "format_version": 1, "x": big}, tmp_path / "c.pt"
        )
        with open_checkpoint(tmp_path / "c.pt") as checkpoint:
            found = checkpoint.training_state()["x"]
        assert found.layout == torch.sparse_coo and found.coalesce().values().tolist() == [3.0]
