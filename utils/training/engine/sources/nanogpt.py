"""nanoGPT's ``ckpt.pt``, as its ``train.py`` writes it.

``train.py`` saves ``{'model', 'optimizer', 'model_args', 'iter_num', 'best_val_loss',
'config'}`` with ``torch.save``:

* ``model`` -- ``raw_model.state_dict()``: our names exactly (this GPT keeps nanoGPT's),
  with ``_orig_mod.`` in front when the model was compiled (the loader strips it), and
  each layer's causal-mask buffer ``attn.bias`` when torch had no flash attention (not a
  weight: left out, with a note);
* ``model_args`` -- ``n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout``:
  ``GPTConfig``'s names; nanoGPT's GELU is the exact one;
* ``iter_num`` -- the step (our ``global_step``); ``best_val_loss`` -- the validation loss
  of the save (a 0-dim tensor, read as a scalar: no other tensor data is read);
* ``config`` -- train.py's settings (ints, floats, strings), kept as ``config["nanogpt"]``.

There is no epoch (nanoGPT counts iterations) and no timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..record import CheckpointRecord, clean_float, clean_int
from ..safe_unpickle import TensorStub
from .base import Probe, Source, WeightSet
from .records import clean_model_settings, record_from_fields
from .torch_files import is_torch_file, structure_of, stub_weights, torch_file

__all__ = ["NanoGPTSource"]

_MASK_BUFFER = re.compile(r"^(?:_orig_mod\.)?transformer\.h\.\d+\.attn\.bias$")
_MAX_SETTINGS = 512


class NanoGPTSource(Source):
    """A dict with ``model`` (a state_dict) and ``model_args`` or ``iter_num``: nanoGPT's train.py."""

    kind = "nanogpt"

    def claims(self, probe: Probe) -> bool:
        if not is_torch_file(probe):
            return False
        structure = structure_of(probe)
        return (
            isinstance(structure, Mapping)
            and isinstance(structure.get("model"), Mapping)
            and ("model_args" in structure or "iter_num" in structure)
        )

    def read_record(self, probe: Probe) -> CheckpointRecord:

        structure = structure_of(probe)
        loss = structure.get("best_val_loss")
        val_loss = torch_file(probe).scalar(loss) if isinstance(loss, TensorStub) else clean_float(loss)
        config: dict[str, Any] = {"model": _model_settings(structure.get("model_args"))}
        settings = _settings(structure.get("config"))
        if settings:
            config["nanogpt"] = settings
        raw = {"global_step": clean_int(structure.get("iter_num")), "metrics": {"val_loss": val_loss}}
        raw["config"] = config
        facts = {
            "has_optimizer": bool(structure.get("optimizer")),
            "has_rng_state": False,
            "tensor_count": sum(isinstance(v, TensorStub) for v in structure["model"].values()),
        }
        notes = [
            "nanoGPT's iter_num is the global step and best_val_loss the validation loss; it has no epoch"
        ]
        return record_from_fields(probe, raw, kind="nanogpt", source="pickle", facts=facts, notes=notes)

    def open_weights(self, probe: Probe) -> WeightSet:
        model = structure_of(probe)["model"]
        masks = [name for name in model if isinstance(name, str) and _MASK_BUFFER.match(name)]
        stubs = {name: value for name, value in model.items() if name not in masks}
        notes = (f"ignored {len(masks)} causal-mask buffer(s) (attn.bias): not weights",) if masks else ()
        return stub_weights(probe, stubs, notes=notes)


def _model_settings(model_args: Any) -> dict[str, Any]:
    """``model_args`` in GPTConfig's names (its keys are ours); nanoGPT's GELU is the exact one."""
    settings = clean_model_settings(model_args)
    if settings:
        settings["activation"] = "gelu"
    return settings


def _settings(config: Any) -> dict[str, Any]:
    """train.py's ``config``: short string keys with plain scalar values (a string of at most 200 characters)."""
    if not isinstance(config, Mapping):
        return {}
    kept = {}
    for key, value in list(config.items())[:_MAX_SETTINGS]:
        if not isinstance(key, str) or len(key) > 64:
            continue
        if isinstance(value, bool) or (isinstance(value, str) and len(value) <= 200):
            kept[key] = value
        elif isinstance(value, int) and abs(value) < 2**62:
            kept[key] = value
        elif isinstance(value, float) and clean_float(value) is not None:
            kept[key] = value
    return kept
