"""damaged_weight_records and load_model_weights(check_integrity=True): damage torch.load lets through."""

from __future__ import annotations

import pytest
import torch

from utils.training.engine.errors import CorruptCheckpointError
from utils.training.engine.integrity import damaged_weight_records
from utils.training.engine.loading import load_model_weights

from .loading_fixtures import assert_unchanged, save_full, snapshot, tiny_gpt


def _flip_inside(path, tensor: torch.Tensor) -> None:
    """Change one byte in the middle of ``tensor``'s bytes in the file (its zip entry's CRC stays)."""
    data = bytearray(path.read_bytes())
    raw = tensor.detach().contiguous().numpy().tobytes()
    start = data.find(raw)
    assert start > 0 and data.find(raw, start + 1) == -1, "the tensor's bytes must be unique in the file"
    data[start + len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


class TestDamagedWeightRecords:
    def test_an_intact_file_has_no_damage(self, tmp_path):
        assert damaged_weight_records(save_full(tmp_path / "ok.pt", tiny_gpt())) == []

    def test_a_changed_weight_byte_is_named(self, tmp_path):
        model = tiny_gpt()
        path = save_full(tmp_path / "bad.pt", model)
        _flip_inside(path, model.transformer.wpe.weight)
        assert damaged_weight_records(path) == ["transformer.wpe.weight"]

    def test_tied_names_sharing_the_damaged_bytes_are_both_named(self, tmp_path):
        model = tiny_gpt()
        path = save_full(tmp_path / "bad.pt", model)
        _flip_inside(path, model.transformer.wte.weight)  # lm_head.weight is the same tensor
        assert damaged_weight_records(path) == ["lm_head.weight", "transformer.wte.weight"]

    def test_damage_in_the_optimizer_state_is_not_the_weights(self, tmp_path):
        model = tiny_gpt()
        optimizer = torch.optim.AdamW(model.parameters())
        for p in model.parameters():
            p.grad = torch.randn_like(p)  # distinct bytes, so the test can find them in the file
        optimizer.step()
        path = tmp_path / "opt.pt"
        torch.save(
            {"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, path
        )
        _flip_inside(path, optimizer.state[model.transformer.wpe.weight]["exp_avg_sq"])
        assert damaged_weight_records(path) == []

    def test_a_legacy_file_has_no_checksums(self, tmp_path):
        path = tmp_path / "old.pt"
        torch.save(tiny_gpt().state_dict(), path, _use_new_zipfile_serialization=False)
        assert damaged_weight_records(path) is None


class TestLoadModelWeightsCheckIntegrity:
    def test_damaged_weights_are_refused_and_the_model_is_unchanged(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        path = save_full(tmp_path / "bad.pt", source)
        _flip_inside(path, source.transformer.wpe.weight)
        before = snapshot(target)
        with pytest.raises(CorruptCheckpointError, match=r"(?s)bad\.pt.*CRC-32.*transformer\.wpe\.weight"):
            load_model_weights(target, path, device="cpu", check_integrity=True)
        assert_unchanged(target, before)

    def test_without_the_check_the_damage_loads_unnoticed(self, tmp_path):
        # why the check exists: torch.load does not compare the stored CRC-32s
        source, target = tiny_gpt(1), tiny_gpt(2)
        path = save_full(tmp_path / "bad.pt", source)
        _flip_inside(path, source.transformer.wpe.weight)
        report = load_model_weights(target, path, device="cpu")
        assert report.verified and report.integrity_checked is None
        assert not torch.equal(target.transformer.wpe.weight, source.transformer.wpe.weight)

    def test_the_report_says_whether_checksums_were_compared(self, tmp_path):
        intact = load_model_weights(
            tiny_gpt(2), save_full(tmp_path / "ok.pt", tiny_gpt(1)), device="cpu", check_integrity=True
        )
        old = tmp_path / "old.pt"
        torch.save(tiny_gpt(1).state_dict(), old, _use_new_zipfile_serialization=False)
        legacy = load_model_weights(tiny_gpt(2), old, device="cpu", check_integrity=True)
        assert (intact.integrity_checked, legacy.integrity_checked) == (True, False)
