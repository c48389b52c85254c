"""EpochStart: the epoch-start copy and the history row's weight-change fields."""

from __future__ import annotations

import torch

from utils.training.analysis.epoch_change import EpochStart, snapshot_bytes
from utils.training.engine import format as fmt

from .conftest import save


def _move(model, scale: float) -> None:
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


class TestOfModel:
    def test_a_copy_in_host_memory_each_tied_tensor_once(self, model):
        start = EpochStart.of_model(model)
        assert list(start.tensors) == [n for n, _ in model.named_parameters()]
        _move(model, 0.1)
        assert not torch.equal(start.tensors["transformer.wte.weight"], model.transformer.wte.weight)
        assert snapshot_bytes(model) == sum(t.numel() * 4 for t in start.tensors.values())


class TestRowFields:
    def test_values_equal_a_direct_computation_rounded_to_four_digits(self, model):
        before = {n: p.detach().clone().double() for n, p in model.named_parameters()}
        start = EpochStart.of_model(model)
        _move(model, 0.05)
        fields = start.row_fields(model)
        for name, param in model.named_parameters():
            direct = (
                float((param.detach().double() - before[name]).norm() / before[name].norm())
                if before[name].norm()
                else None
            )
            recorded = fields[fmt.WEIGHT_CHANGE_KEY][name]
            assert recorded == (None if direct is None else float(f"{direct:.4g}"))
        assert set(fields[fmt.LAYER_CHANGE_KEY]) == {"embeddings", "block 0", "block 1", "final norm"}
        assert fmt.WEIGHT_CHANGE_FROM_STEP_KEY not in fields

    def test_zero_initialised_biases_have_no_ratio_and_unmoved_tensors_zero(self, model):
        start = EpochStart.of_model(model)
        with torch.no_grad():
            model.transformer.h[0].attn.c_attn.bias.add_(0.1)  # starts at zeros (GPT init)
        changes = start.row_fields(model)[fmt.WEIGHT_CHANGE_KEY]
        assert changes["transformer.h.0.attn.c_attn.bias"] is None
        assert changes["transformer.wte.weight"] == 0.0


class TestForEpoch:
    def _history(self, epoch: int) -> list[dict]:
        return [{"epoch": epoch, "global_step": 10 * (epoch + 1), "val_loss": 3.0}]

    def test_at_an_epoch_start_the_models_weights(self, model, tmp_path):
        start = EpochStart.for_epoch(
            model, epoch=1, first_batch=0, global_step=10, history=[], folders=[tmp_path]
        )
        assert start.from_step is None and torch.equal(
            start.tensors["transformer.wte.weight"], model.transformer.wte.weight
        )

    def test_mid_epoch_reads_the_previous_epoch_end_checkpoint(self, model, tmp_path):
        epoch_end = {n: p.detach().clone() for n, p in model.named_parameters()}
        save(tmp_path, model, 0, val_loss=3.0)  # epoch 0 ends at step 10
        _move(model, 0.1)  # three steps into epoch 1
        start = EpochStart.for_epoch(model, epoch=1, first_batch=3, global_step=13, history=self._history(0),
                                     folders=[tmp_path])  # fmt: skip
        assert start.from_step is None
        assert all(torch.equal(start.tensors[n], t) for n, t in epoch_end.items())

    def test_mid_epoch_without_that_file_measures_from_the_resume_step(self, model, tmp_path):
        save(tmp_path, model, 0, val_loss=2.5)  # another run's epoch 0: other validation loss
        start = EpochStart.for_epoch(model, epoch=1, first_batch=3, global_step=13, history=self._history(0),
                                     folders=[tmp_path])  # fmt: skip
        assert start.from_step == 13
        assert start.row_fields(model)[fmt.WEIGHT_CHANGE_FROM_STEP_KEY] == 13

    def test_mid_first_epoch_has_no_start_file(self, model, tmp_path):
        start = EpochStart.for_epoch(
            model, epoch=0, first_batch=2, global_step=2, history=[], folders=[tmp_path]
        )
        assert start.from_step == 2
