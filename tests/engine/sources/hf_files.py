"""Hugging Face GPT-2 files in every shape users bring, made with transformers and safetensors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def mask_buffers(n_layer: int, block: int) -> dict[str, torch.Tensor]:
    """The buffers older transformers versions saved per layer: the causal mask and masked_bias."""
    buffers = {}
    for i in range(n_layer):
        buffers[f"h.{i}.attn.bias"] = torch.tril(torch.ones(block, block, dtype=torch.bool)).view(
            1, 1, block, block
        )
        buffers[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return buffers


def hub_base_file(hf_model, path: Path) -> Path:
    """The hub's ``model.safetensors`` of gpt2: GPT2Model's names (``h.0...``), with the mask buffers."""
    tensors = {name: tensor.contiguous() for name, tensor in hf_model.transformer.state_dict().items()}
    config = hf_model.config
    tensors.update(mask_buffers(config.n_layer, config.n_positions))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata={"format": "pt"})
    return path


def torch_state_dict_file(hf_model, path: Path, *, prefixed: bool = True) -> Path:
    """``torch.save(hf_model.state_dict())`` (prefixed: GPT2LMHeadModel's; else GPT2Model's)."""
    state = hf_model.state_dict() if prefixed else hf_model.transformer.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def bin_folder(hf_folder: Path, hf_model, folder: Path) -> Path:
    """An older save_pretrained folder: config.json + pytorch_model.bin (with the legacy buffers)."""
    folder.mkdir(parents=True)
    shutil.copy(hf_folder / "config.json", folder / "config.json")
    state = dict(hf_model.state_dict())
    config = hf_model.config
    state.update({f"transformer.{k}": v for k, v in mask_buffers(config.n_layer, config.n_positions).items()})
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def sharded_folder(hf_folder: Path, folder: Path) -> Path:
    """config.json + model.safetensors.index.json + two shards (split by name, as save_pretrained does)."""
    folder.mkdir(parents=True)
    shutil.copy(hf_folder / "config.json", folder / "config.json")
    tensors = load_file(hf_folder / "model.safetensors")
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}  # fmt: skip
    weight_map = {}
    for shard, shard_names in halves.items():
        save_file({n: tensors[n] for n in shard_names}, folder / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard_names, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    """A safetensors file written by hand (for headers that lie)."""
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data
