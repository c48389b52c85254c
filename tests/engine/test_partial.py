"""load_model_weights(strict=False): what fits loads, the rest stays, the report says which (issue 11, item 4)."""

from __future__ import annotations

import pytest
import torch

from tests.engine.loading_fixtures import save_full, snapshot, tiny_gpt
from utils.training.engine.errors import CorruptCheckpointError
from utils.training.engine.loading import load_model_weights
from utils.training.engine.partial import resizable_names


@pytest.fixture
def two_layers(tmp_path):
    source = tiny_gpt(1)  # 2 layers, vocabulary 256
    return source, save_full(tmp_path / "two.pt", source)


class TestPartialLoad:
    def test_two_layers_into_three_load_blocks_0_and_1_and_keep_block_2(self, two_layers):
        source, path = two_layers
        target = tiny_gpt(2, n_layer=3)
        block_2 = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("transformer.h.2.")}
        report = load_model_weights(target, path, "cpu", strict=False)
        state = target.state_dict()
        for name, tensor in source.state_dict().items():
            assert torch.equal(state[name], tensor), name
        assert all(torch.equal(state[name], tensor) for name, tensor in block_2.items())
        assert sorted(report.partial.kept) == sorted(block_2) and report.verified

    def test_a_vocabulary_of_256_into_300_copies_rows_0_to_255(self, two_layers):
        source, path = two_layers
        target = tiny_gpt(2, vocab_size=300)
        new_rows = target.transformer.wte.weight[256:].clone()
        report = load_model_weights(target, path, "cpu", strict=False)
        weight = target.transformer.wte.weight
        assert torch.equal(weight[:256], source.transformer.wte.weight) and torch.equal(
            weight[256:], new_rows
        )
        assert ("transformer.wte.weight", (256, 64), (300, 64)) in report.partial.resized
        assert target.lm_head.weight is target.transformer.wte.weight  # still tied

    def test_unexpected_and_mismatched_tensors_are_reported_and_left_alone(self, two_layers, tmp_path):
        source, _ = two_layers
        state = source.state_dict()
        state["extra.weight"] = torch.ones(3)
        state["transformer.h.0.attn.c_attn.weight"] = torch.ones(5, 5)
        path = save_full(tmp_path / "odd.pt", source, state)
        target = tiny_gpt(2)
        before = snapshot(target)
        report = load_model_weights(target, path, "cpu", strict=False)
        assert report.partial.ignored == ["extra.weight"]
        assert [m[0] for m in report.partial.mismatched] == ["transformer.h.0.attn.c_attn.weight"]
        assert torch.equal(
            target.transformer.h[0].attn.c_attn.weight, before["transformer.h.0.attn.c_attn.weight"]
        )

    def test_share_from_file_counts_each_parameter_once(self, two_layers):
        _, path = two_layers
        report = load_model_weights(tiny_gpt(2), path, "cpu", strict=False)
        assert report.partial.share_from_file == 1.0
        assert report.partial.total_params == sum(p.numel() for p in tiny_gpt(2).parameters())

    def test_freeze_loaded_freezes_only_what_came_whole_from_the_file(self, two_layers):
        _, path = two_layers
        target = tiny_gpt(2, n_layer=3, vocab_size=300)
        report = load_model_weights(target, path, "cpu", strict=False, freeze_loaded=True)
        frozen = {name for name, p in target.named_parameters() if not p.requires_grad}
        assert "transformer.h.0.attn.c_attn.weight" in frozen
        assert "transformer.h.2.attn.c_attn.weight" not in frozen
        assert "transformer.wte.weight" not in frozen  # resized: its new rows must learn
        assert report.frozen_loaded == report.frozen_params > 0

    def test_still_all_or_nothing(self, two_layers, tmp_path):
        _, path = two_layers
        damaged = tmp_path / "cut.pt"
        damaged.write_bytes(path.read_bytes()[:-10])
        target = tiny_gpt(2, n_layer=3)
        before = snapshot(target)
        with pytest.raises(CorruptCheckpointError):
            load_model_weights(target, damaged, "cpu", strict=False)
        assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())

    def test_strict_stays_the_default(self, two_layers):
        _, path = two_layers
        with pytest.raises(ValueError, match="do not fit"):
            load_model_weights(tiny_gpt(2, n_layer=3), path, "cpu")


class TestResizableNames:
    def test_embeddings_and_the_tied_output_matrix(self):
        assert resizable_names(tiny_gpt()) == {
            "transformer.wte.weight",
            "transformer.wpe.weight",
            "lm_head.weight",
        }
