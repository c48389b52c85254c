"""The host copy a background save writes: equal, independent of training, shared storage kept, reused."""

from __future__ import annotations

import collections

import pytest
import torch

from tests.engine.helpers import tiny_gpt_after_one_step
from utils.training.engine.snapshot import HostSnapshot, state_nbytes


@pytest.fixture
def trained():
    return tiny_gpt_after_one_step()


def _step(model, optimizer):
    x = torch.randint(256, (2, 16))
    model(x, x)[1].backward()
    optimizer.step()


class TestHostSnapshotCopy:
    def test_equal_now_and_unchanged_by_later_training(self, trained):
        model, optimizer = trained
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        before = {k: v.clone() for k, v in model.state_dict().items()}
        copy = HostSnapshot().copy(state)
        _step(model, optimizer)  # in-place updates of weights and moments
        assert all(torch.equal(copy["model"][k], before[k]) for k in before)
        assert not torch.equal(copy["model"]["lm_head.weight"], model.lm_head.weight.detach())
        moments = copy["optimizer"]["state"][0]["exp_avg"]
        assert not torch.equal(moments, optimizer.state_dict()["state"][0]["exp_avg"])

    def test_tied_weights_share_one_copy_and_the_file_stores_them_once(self, trained, tmp_path):
        model, _ = trained
        copy = HostSnapshot().copy({"model_state_dict": model.state_dict()})["model_state_dict"]
        assert copy["lm_head.weight"].data_ptr() == copy["transformer.wte.weight"].data_ptr()
        torch.save(copy, tmp_path / "copy.pt")
        torch.save(model.state_dict(), tmp_path / "live.pt")
        assert (tmp_path / "copy.pt").stat().st_size == (tmp_path / "live.pt").stat().st_size
        loaded = torch.load(tmp_path / "copy.pt", weights_only=True)
        assert loaded["lm_head.weight"].data_ptr() == loaded["transformer.wte.weight"].data_ptr()

    def test_views_keep_offset_shape_and_stride(self):
        base = torch.arange(24.0).reshape(4, 6)
        state = {"row": base[1], "column": base[:, 2], "transposed": base.t(), "base": base}
        copy = HostSnapshot().copy(state)
        assert all(torch.equal(copy[k], v) and copy[k].stride() == v.stride() for k, v in state.items())
        assert copy["row"].untyped_storage().data_ptr() == copy["base"].untyped_storage().data_ptr()

    def test_buffers_are_reused_from_one_save_to_the_next(self, trained):
        model, optimizer = trained
        snapshot = HostSnapshot()
        first = snapshot.copy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
        pointer = first["optimizer"]["state"][0]["exp_avg"].data_ptr()
        _step(model, optimizer)
        second = snapshot.copy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
        assert second["optimizer"]["state"][0]["exp_avg"].data_ptr() == pointer
        assert torch.equal(second["model"]["lm_head.weight"], model.lm_head.weight.detach())

    def test_containers_are_rebuilt_so_later_appends_do_not_leak_in(self):
        history = [{"epoch": 0, "val_loss": 2.0}]
        state = collections.OrderedDict(history=history, ids=(1, 2), tags={"a"}, name="x", when=None)
        copy = HostSnapshot().copy(state)
        history.append({"epoch": 1})
        history[0]["val_loss"] = 9.0
        assert copy["history"] == [{"epoch": 0, "val_loss": 2.0}] and type(copy) is collections.OrderedDict
        assert (copy["ids"], copy["tags"], copy["name"], copy["when"]) == ((1, 2), {"a"}, "x", None)

    def test_result_loads_with_weights_only(self, trained, tmp_path):
        model, optimizer = trained
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 3}
        torch.save(HostSnapshot().copy(state), tmp_path / "s.pt")
        loaded = torch.load(tmp_path / "s.pt", weights_only=True)
        assert loaded["step"] == 3 and torch.equal(loaded["model"]["lm_head.weight"], model.lm_head.weight)

    def test_parameters_stay_parameters(self):
        weight = torch.nn.Parameter(torch.ones(3))
        copy = HostSnapshot().copy({"w": weight})["w"]
        assert isinstance(copy, torch.nn.Parameter) and copy.requires_grad and torch.equal(copy, weight)

    def test_a_tensor_that_is_gone_frees_its_buffer(self):
        snapshot = HostSnapshot()
        snapshot.copy({"a": torch.ones(100), "b": torch.ones(10)})
        assert snapshot.nbytes == 440
        snapshot.copy({"b": torch.ones(10)})
        assert snapshot.nbytes == 40


class TestHostSnapshotRelease:
    def test_frees_the_buffers_but_not_a_copy_in_use(self):
        snapshot = HostSnapshot()
        copy = snapshot.copy({"a": torch.arange(5.0)})
        snapshot.release()
        assert snapshot.nbytes == 0 and torch.equal(copy["a"], torch.arange(5.0))


class TestStateNbytes:
    def test_counts_each_storage_once(self, trained):
        model, _ = trained
        state = model.state_dict()
        unique = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in state.values()}
        assert state_nbytes({"a": state, "b": [state]}) == sum(unique.values())
        assert state_nbytes(state) < sum(t.numel() * t.element_size() for t in state.values())  # tied

    def test_matches_what_a_snapshot_holds(self, trained):
        model, optimizer = trained
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        snapshot = HostSnapshot()
        snapshot.copy(state)
        assert snapshot.nbytes == state_nbytes(state)
