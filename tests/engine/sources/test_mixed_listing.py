"""A folder mixing every source lists them all, each with its kind, sorted as always, metadata only."""

from __future__ import annotations

import shutil

import pytest
import torch

from utils.notebook.export import export_safetensors
from utils.training.engine import list_checkpoints, save_checkpoint
from utils.training.engine.safetensors_file import SafetensorsFile
from utils.training.engine.torchfile import TorchFile

from .conftest import our_gpt
from .hf_files import hub_base_file
from .nanogpt_files import nanogpt_state, write_ckpt


@pytest.fixture
def mixed_folder(tmp_path, hf_folder, hf_model, lightning_run):
    folder = tmp_path / "mixed"
    write_ckpt(folder / "ckpt.pt", nanogpt_state(), iter_num=300, best_val_loss=1.5)
    shutil.copy(lightning_run[0], folder / "lightning.ckpt")
    shutil.copytree(hf_folder, folder / "gpt2-tiny")
    hub_base_file(hf_model, folder / "hub.safetensors")
    export_safetensors(our_gpt(), folder)
    model = our_gpt()
    save_checkpoint(folder, model, epoch=0, global_step=10, metrics={"val_loss": 0.5}, retention=None)
    torch.save(model.state_dict(), folder / "bare.pt")
    return folder


class TestListMixedFolder:
    def test_every_source_with_its_kind_best_val_loss_first(self, mixed_folder, monkeypatch):
        read = []
        monkeypatch.setattr(SafetensorsFile, "tensor", lambda self, name: read.append(name))
        original = TorchFile.tensor
        monkeypatch.setattr(
            TorchFile, "tensor", lambda self, stub: read.append(stub.shape) or original(self, stub)
        )
        skipped = []
        records = list_checkpoints(mixed_folder, on_skip=skipped.append)
        kinds = {record.name: record.kind for record in records}
        assert skipped == []
        assert kinds == {
            "ckpt.pt": "nanogpt", "lightning.ckpt": "lightning", "gpt2-tiny": "huggingface",
            "hub.safetensors": "huggingface", "model.safetensors": "safetensors", "bare.pt": "bare",
            records[0].name: "full",
        }  # fmt: skip
        with_loss = [record.val_loss for record in records if record.val_loss is not None]
        assert with_loss == sorted(with_loss) and records[0].kind == "full"  # val_loss 0.5: the best
        assert read and all(shape == () for shape in read)  # scalars only (nanoGPT's and Lightning's losses)
