"""shared_storage_keys: a tensor DCP stored under two names (a tied lm_head.weight) is one tensor."""

from __future__ import annotations

import torch

from tests.engine.sharded_helpers import write_dcp, write_sharded
from utils.model import GPT, config_for_preset
from utils.training.engine.dcp_index import read_dcp_metadata, tensor_entries
from utils.training.engine.dcp_ties import shared_storage_keys
from utils.training.engine.sources.dcp import weight_names

HEAD, EMBEDDING = "lm_head.weight", "transformer.wte.weight"


def _keys(folder) -> dict:
    metadata = read_dcp_metadata(folder)
    return shared_storage_keys(folder, metadata, weight_names(list(tensor_entries(metadata)))[0])


def _gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(config_for_preset("tiny", dropout=0.0))


class TestSharedStorageKeys:
    def test_our_sharded_folders_tied_head_is_one_tensor_and_nothing_else(self, tmp_path):
        model = _gpt()  # every LayerNorm weight is ones: equal bytes, yet not one tensor
        folder = write_sharded(tmp_path, model=model, optimizer=torch.optim.AdamW(model.parameters()))
        assert _keys(folder) == {
            HEAD: ("dcp", "model." + EMBEDDING),
            EMBEDDING: ("dcp", "model." + EMBEDDING),
        }

    def test_a_prefixed_pair_is_tied_under_its_prefix(self, tmp_path):
        weight = torch.randn(8, 4)
        state = {f"_orig_mod.{HEAD}": weight, f"_orig_mod.{EMBEDDING}": weight, "x.lm_head.weight": weight}
        assert set(_keys(write_dcp(tmp_path / "d", state))) == {f"_orig_mod.{HEAD}", f"_orig_mod.{EMBEDDING}"}

    def test_an_untied_head_stays_distinct(self, tmp_path):
        model = _gpt()
        model.lm_head.weight = torch.nn.Parameter(model.transformer.wte.weight.detach() + 1)  # untied
        assert _keys(write_dcp(tmp_path / "d", {"model": model.state_dict()})) == {}

    def test_equal_values_of_another_dtype_stay_distinct(self, tmp_path):
        state = {HEAD: torch.ones(4, 4), EMBEDDING: torch.ones(4, 4, dtype=torch.float64)}
        assert _keys(write_dcp(tmp_path / "d", state)) == {}

    def test_bytes_that_are_not_a_zip_tie_nothing(self, tmp_path):
        folder = write_dcp(tmp_path / "d", {HEAD: torch.ones(4, 4), EMBEDDING: torch.ones(4, 4)})
        assert set(_keys(folder)) == {HEAD, EMBEDDING}
        for shard in folder.glob("*.distcp"):
            shard.write_bytes(b"\0" * shard.stat().st_size)
        assert _keys(folder) == {}
