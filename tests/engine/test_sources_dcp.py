"""DcpSource: any torch.distributed.checkpoint folder, read in one process without a process group."""

from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import TinyNet, stepped_optimizer
from tests.engine.sharded_helpers import write_dcp
from utils.training.engine.errors import CheckpointError, CorruptCheckpointError
from utils.training.engine.loading import load_model_weights
from utils.training.engine.sources.base import Probe
from utils.training.engine.sources.dcp import DcpSource, weight_names
from utils.training.engine.sources.sharded import folder_probe


@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


class TestWeightNames:
    def test_the_model_group(self):
        names, group = weight_names(["model.fc1.weight", "optimizer.state.fc1.weight.exp_avg"])
        assert (names, group) == ({"fc1.weight": "model.fc1.weight"}, "model.")

    def test_tutorials_app_group(self):
        assert weight_names(["app.model.fc1.weight", "app.optim.state.x"])[0] == {
            "fc1.weight": "app.model.fc1.weight"
        }

    def test_a_bare_state_dict_keeps_every_name_outside_optimizer_groups(self):
        names, group = weight_names(["module.fc1.weight", "optim.state.x"])
        assert (names, group) == ({"module.fc1.weight": "module.fc1.weight"}, None)


class TestDcpSourceClaims:
    def test_a_dcp_folder(self, tmp_path, model):
        assert DcpSource().claims(folder_probe(write_dcp(tmp_path / "d", model.state_dict())))

    def test_not_a_file_nor_a_folder_without_an_index(self, tmp_path):
        (tmp_path / "__0_0.distcp").write_bytes(b"")
        assert not DcpSource().claims(folder_probe(tmp_path))
        assert not DcpSource().claims(Probe(path=tmp_path / "__0_0.distcp", is_dir=False, size=0))


class TestDcpSourceReadRecord:
    def test_from_the_index_alone(self, tmp_path, model):
        folder = write_dcp(tmp_path / "d", {"model": model.state_dict(), "optimizer": _named(model)})
        for shard in folder.glob("*.distcp"):
            shard.write_bytes(b"\0" * shard.stat().st_size)  # shard bytes are never read for the record
        record = DcpSource().read_record(folder_probe(folder))
        assert (record.kind, record.tensor_count, record.has_optimizer) == ("dcp", 4, True)
        assert record.epoch is None and record.size_bytes > 0


class TestDcpSourceOpenWeights:
    @pytest.mark.parametrize("nested", [True, False], ids=["model-group", "bare"])
    def test_the_weights_under_the_models_names(self, tmp_path, model, nested):
        state = {"model": model.state_dict()} if nested else model.state_dict()
        with DcpSource().open_weights(folder_probe(write_dcp(tmp_path / "d", state))) as weights:
            assert weights.names() == list(model.state_dict())
            assert (
                weights.spec("fc1.weight").shape == (8, 4)
                and weights.spec("fc1.weight").dtype == torch.float32
            )
            assert all(torch.equal(weights.tensor(n), t) for n, t in model.state_dict().items())

    def test_missing_shard_fails_before_any_tensor_is_given(self, tmp_path, model):
        folder = write_dcp(tmp_path / "d", model.state_dict())
        (folder / "__0_0.distcp").unlink()
        with pytest.raises(CorruptCheckpointError, match=r"shard file __0_0\.distcp is missing"):
            DcpSource().open_weights(folder_probe(folder))


def _named(model: TinyNet) -> dict:
    """An optimizer state in DCP's named form, as get_state_dict gives it."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    return get_state_dict(model, stepped_optimizer(model))[1]


class TestDcpFolderThroughTheLoader:
    """load_model_weights (Cell 34) on DCP folders: detection through the registry, then DcpSource."""

    def test_prefixed_names_load_into_the_model(self, tmp_path, model):
        wrapped = {
            f"module.{name}": tensor for name, tensor in model.state_dict().items()
        }  # a DDP model's names
        folder = write_dcp(tmp_path / "d", {"model": wrapped})
        fresh = TinyNet()
        report = load_model_weights(fresh, folder, "cpu")
        assert report.verified and report.kind == "dcp"
        assert all(torch.equal(fresh.state_dict()[n], t) for n, t in model.state_dict().items())

    def test_a_missing_shard_leaves_the_model_unchanged(self, tmp_path, model):
        folder = write_dcp(tmp_path / "d", model.state_dict())
        (folder / "__0_0.distcp").unlink()
        fresh = TinyNet()
        before = {name: tensor.clone() for name, tensor in fresh.state_dict().items()}
        with pytest.raises(CheckpointError, match=r"shard file __0_0\.distcp is missing"):
            load_model_weights(fresh, folder, "cpu")
        assert all(torch.equal(fresh.state_dict()[n], t) for n, t in before.items())
