"""Hugging Face GPT-2 <-> this notebook's GPT: names, shapes and settings, both ways.

The two models are the same network with the same parameter names (nanoGPT copied
Hugging Face's), except that:

* Hugging Face's projections are ``Conv1D`` modules whose weight is stored as
  ``(in, out)``, the transpose of ``nn.Linear``'s ``(out, in)``: ``attn.c_attn``,
  ``attn.c_proj``, ``mlp.c_fc`` and ``mlp.c_proj``. They are handed to the loader as
  transposed *views*, so the copy transposes and nothing is copied twice;
* ``save_pretrained`` leaves out ``lm_head.weight`` (tied to ``transformer.wte.weight``):
  it is rebuilt from the embedding, under the same storage key, so it is copied once;
* the hub's base ``GPT2Model`` files have no ``transformer.`` prefix (``h.0.attn...``);
* older files carry buffers that are not weights (``attn.bias``, the causal mask, and
  ``attn.masked_bias``): ignored, with a note;
* GPT-2 uses the tanh approximation of GELU (``activation_function`` ``gelu_new``):
  ``GPTConfig.activation = "gelu_tanh"``; exact ``gelu`` maps to ours.

:func:`gpt_settings` reads ``config.json`` into ``GPTConfig``'s names and refuses what
our model cannot compute (another architecture, another layer-norm epsilon, ...);
:func:`hf_config` and :func:`hf_state_dict` go the other way for the export.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ArchitectureMismatchError
from ..record import clean_float, clean_int
from ..text import json_type, safe_text, short_repr
from .base import TensorSpec, WeightSet

__all__ = [
    "EMBEDDING",
    "HEAD",
    "gpt_settings",
    "hf_config",
    "hf_layout_of",
    "hf_state_dict",
    "is_our_trunk",
    "to_our_weights",
    "trunk_to_our_weights",
]

EMBEDDING, HEAD = "transformer.wte.weight", "lm_head.weight"
_CONV1D = re.compile(r"^transformer\.h\.\d+\.(?:attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
_LEGACY_BUFFER = re.compile(r"^(?:transformer\.)?h\.\d+\.attn\.(?:bias|masked_bias)$")
_C_ATTN = re.compile(r"^(?:transformer\.)?h\.\d+\.attn\.c_attn\.weight$")
_C_FC = re.compile(r"^(?:transformer\.)?h\.\d+\.mlp\.c_fc\.weight$")
# The names of our GPT's ``transformer`` submodule alone (torch.save(model.transformer.state_dict()))
_TRUNK = re.compile(r"^(?:wte\.weight|wpe\.weight|ln_f\.(?:weight|bias)|h\.\d+\.[A-Za-z0-9_.]+)$")
# config.json's activation_function -> GPTConfig.activation, and back (transformers maps "gelu" to
# the exact GELU, "gelu_new" and "gelu_pytorch_tanh" to GPT-2's tanh approximation)
_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
_HF_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
_ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
_GPT2_FIX = (
    "pick a GPT-2 checkpoint (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, or a model fine-tuned "
    "from one): this notebook's model is GPT-2's architecture"
)


def hf_layout_of(specs: Mapping[str, TensorSpec]) -> str | None:
    """``"base"`` (hub ``GPT2Model``: ``h.0...``), ``"lm"`` (``transformer.h.0...``), or None when the
    names and shapes are not Hugging Face GPT-2's.

    Names alone do not decide: ``torch.save(our_gpt.transformer.state_dict())`` has the base
    names too. The projections do: ``c_attn`` / ``c_fc`` stored ``(in, 3 * in)`` / ``(in, 4 * in)``
    are Conv1D (Hugging Face), stored the other way round Linear (ours: None). Files without such
    a weight are decided by the legacy mask buffers, else by the names (nothing to transpose).
    """
    names = list(specs)
    if "wte.weight" in specs or any(name.startswith("h.") for name in names):
        layout = "base"
    elif any(name.startswith("transformer.h.") or name == EMBEDDING for name in names):
        layout = "lm"
    else:
        return None
    orientation = _orientation(specs, names)
    if orientation == "linear":
        return None
    if orientation == "conv1d" or layout == "base":
        return layout
    return "lm" if any(_LEGACY_BUFFER.match(name) for name in names) else None


def _orientation(specs: Mapping[str, TensorSpec], names: list[str]) -> str | None:
    """``"conv1d"``, ``"linear"``, or None when no ``c_attn`` / ``c_fc`` weight shows it (or they disagree
    with both: not a GPT-2 projection)."""
    for pattern, factor in ((_C_ATTN, 3), (_C_FC, 4)):
        shape = next((specs[n].shape for n in names if pattern.match(n) and len(specs[n].shape) == 2), None)
        if shape is None or not shape[0] or not shape[1]:
            continue
        if shape[1] == factor * shape[0]:
            return "conv1d"
        if shape[0] == factor * shape[1]:
            return "linear"
    return None


def to_our_weights(raw: WeightSet, layout: str) -> WeightSet:
    """``raw`` (Hugging Face names) under our names: Conv1D weights transposed (views), the tied
    ``lm_head`` rebuilt from the embedding, the legacy mask buffers left out (each said in a note)."""
    mapping, transposed, ignored = {}, set(), []
    for name in raw.names():
        if _LEGACY_BUFFER.match(name):
            ignored.append(name)
            continue
        ours = f"transformer.{name}" if layout == "base" and not name.startswith("lm_head.") else name
        mapping[ours] = name
        if _CONV1D.match(ours) and len(raw.spec(name).shape) == 2:
            transposed.add(ours)
    notes = ["Hugging Face GPT-2 layout: Conv1D weights transposed into Linear weights while copying"]
    if HEAD not in mapping and EMBEDDING in mapping:
        mapping[HEAD] = mapping[EMBEDDING]
        notes.append(
            "lm_head.weight rebuilt from transformer.wte.weight (GPT-2 ties them; the file stores one)"
        )
    if ignored:
        notes.append(
            f"ignored {len(ignored)} attention-mask buffer(s) (attn.bias / attn.masked_bias): not weights"
        )
    specs = {}
    for ours, theirs in mapping.items():
        spec = raw.spec(theirs)
        specs[ours] = TensorSpec(tuple(reversed(spec.shape)), spec.dtype) if ours in transposed else spec

    def read(name: str) -> torch.Tensor:
        tensor = raw.tensor(mapping[name])
        return tensor.t() if name in transposed else tensor

    has_checksums = raw.damaged([]) is not None
    return WeightSet(
        specs,
        read,
        storage_keys={ours: raw.storage_key(theirs) for ours, theirs in mapping.items()},
        notes=raw.notes + tuple(notes),
        close=raw.close,
        checksums=(lambda names: raw.damaged([mapping[n] for n in names])) if has_checksums else None,
    )


def is_our_trunk(specs: Mapping[str, TensorSpec]) -> bool:
    """True for our GPT's ``transformer`` submodule saved alone: only its names (``wte.weight``,
    ``wpe.weight``, ``h.N...``, ``ln_f...``), the embedding among them, and Linear projections
    (Hugging Face's ``GPT2Model`` has the same names with Conv1D ones: :func:`hf_layout_of`)."""
    return (
        "wte.weight" in specs
        and all(isinstance(name, str) and _TRUNK.match(name) for name in specs)
        and hf_layout_of(specs) is None
    )


def trunk_to_our_weights(raw: WeightSet) -> WeightSet:
    """:func:`is_our_trunk` weights under the whole model's names: ``transformer.`` in front, and
    ``lm_head.weight`` as the embedding it is tied to (same storage key: copied once)."""
    mapping = {f"transformer.{name}": name for name in raw.names()}
    mapping[HEAD] = "wte.weight"
    return raw.renamed(
        mapping,
        (
            "the file holds model.transformer's weights alone: 'transformer.' added to every name, "
            "lm_head.weight taken from wte.weight (tied)",
        ),
    )


def gpt_settings(config: Any, path: Path) -> tuple[dict[str, Any], list[str]]:
    """GPTConfig settings from a parsed ``config.json``, and notes on what was assumed.

    Raises:
        ArchitectureMismatchError: not GPT-2 (e.g. ``LlamaForCausalLM``), or a GPT-2 variant this
            model cannot compute (another activation, layer-norm epsilon, inner width, attention scaling).
    """
    if not isinstance(config, Mapping):
        raise _refusal(path, f"its config.json is a JSON {type(config).__name__}, not an object")
    model_type = config.get("model_type")
    architectures = config.get("architectures")
    architectures = (
        [a for a in architectures if isinstance(a, str)] if isinstance(architectures, list) else []
    )
    if model_type != "gpt2" and not (model_type is None and set(architectures) & set(_ARCHITECTURES)):
        found = f"model_type {safe_text(model_type, 40)!r}" + (
            f" ({safe_text(', '.join(architectures), 80)})" if architectures else ""
        )
        raise _refusal(path, f"is a Hugging Face model of another architecture: config.json says {found}")
    _check_variant(config, path)
    activation = config.get("activation_function", "gelu_new")
    settings: dict[str, Any] = {"bias": True, "activation": _ACTIVATIONS[activation]}
    for ours, theirs in (("vocab_size", "vocab_size"), ("n_layer", "n_layer"), ("n_head", "n_head"),
                         ("n_embd", "n_embd"), ("block_size", "n_positions")):  # fmt: skip
        value = clean_int(config.get(theirs, config.get("n_ctx") if theirs == "n_positions" else None))
        if value:
            settings[ours] = value
    dropout = clean_float(config.get("resid_pdrop"))
    settings["dropout"] = dropout if dropout is not None and 0.0 <= dropout < 1.0 else 0.0
    notes = [f"activation_function {activation!r} -> activation {settings['activation']!r}"]
    if config.get("tie_word_embeddings") is False:
        notes.append("config.json unties lm_head from wte; this model ties them (both must be equal to load)")
    return settings, notes


def _check_variant(config: Mapping[str, Any], path: Path) -> None:
    """Refuse the GPT-2 options our model does not compute (its logits would differ)."""
    activation = config.get("activation_function", "gelu_new")
    if not isinstance(activation, str):  # a list or an object would not even hash: say what it is
        raise _refusal(
            path,
            f"has an activation_function that is a JSON {json_type(activation)} ({short_repr(activation)}), "
            "not a name",
        )
    if activation not in _ACTIVATIONS:
        raise _refusal(
            path,
            f"uses activation_function {safe_text(activation, 40)!r}; this model computes "
            f"{', '.join(repr(a) for a in _ACTIVATIONS)}",
        )
    epsilon = clean_float(config.get("layer_norm_epsilon", 1e-5))
    n_embd, n_inner = clean_int(config.get("n_embd")), config.get("n_inner")
    problems = [
        (epsilon is None or not math.isclose(epsilon, 1e-5, rel_tol=1e-6), "a layer_norm_epsilon other than 1e-5"),
        (n_inner is not None and (n_embd is None or clean_int(n_inner) != 4 * n_embd), "an n_inner other than 4 * n_embd"),
        (config.get("scale_attn_weights", True) is not True, "unscaled attention (scale_attn_weights false)"),
        (config.get("scale_attn_by_inverse_layer_idx") is True, "attention scaled by layer (scale_attn_by_inverse_layer_idx)"),
    ]  # fmt: skip
    for found, what in problems:
        if found:
            raise _refusal(path, f"is a GPT-2 variant with {what}, which this model does not compute")


def _refusal(path: Path, problem: str) -> ArchitectureMismatchError:
    return ArchitectureMismatchError(
        path,
        problem,
        expected="GPT-2 (config.json with model_type 'gpt2': GPT2LMHeadModel or GPT2Model; "
        f"activation_function one of {', '.join(_ACTIVATIONS)})",
        fix=_GPT2_FIX,
    )


def hf_config(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``config.json`` of ``transformers.GPT2Config`` for our model's settings (GPTConfig.to_dict())."""
    vocab = int(model_config["vocab_size"])
    dropout = float(model_config.get("dropout", 0.0))
    eos = 50256 if vocab > 50256 else None  # GPT-2's <|endoftext|>, when the vocabulary has it
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": vocab,
        "n_positions": int(model_config["block_size"]),
        "n_embd": int(model_config["n_embd"]),
        "n_layer": int(model_config["n_layer"]),
        "n_head": int(model_config["n_head"]),
        "n_inner": None,
        "activation_function": _HF_ACTIVATIONS[model_config.get("activation", "gelu")],
        "resid_pdrop": dropout,
        "embd_pdrop": dropout,
        "attn_pdrop": dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eos,
        "eos_token_id": eos,
    }


def hf_state_dict(
    state: Mapping[str, torch.Tensor], model_config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Our ``state_dict`` in ``GPT2LMHeadModel``'s names and shapes, contiguous, on the CPU.

    Linear weights become Conv1D weights (transposed); the tied ``lm_head.weight`` is left out
    (``from_pretrained`` ties it back); a model without biases gets zero biases, which compute
    the same (GPT-2 always has them).
    """
    out = {}
    for name, tensor in state.items():
        if name == HEAD:
            continue
        tensor = tensor.detach().to("cpu")
        out[name] = (tensor.t() if _CONV1D.match(name) else tensor).contiguous()
    if not model_config.get("bias", True):
        _add_zero_biases(out, int(model_config["n_layer"]), int(model_config["n_embd"]))
    return out


def _add_zero_biases(out: dict[str, torch.Tensor], n_layer: int, n_embd: int) -> None:
    dtype = out[EMBEDDING].dtype
    widths = {"ln_1": n_embd, "ln_2": n_embd, "attn.c_attn": 3 * n_embd, "attn.c_proj": n_embd,
              "mlp.c_fc": 4 * n_embd, "mlp.c_proj": n_embd}  # fmt: skip
    for layer in range(n_layer):
        for module, width in widths.items():
            out.setdefault(f"transformer.h.{layer}.{module}.bias", torch.zeros(width, dtype=dtype))
    out.setdefault("transformer.ln_f.bias", torch.zeros(n_embd, dtype=dtype))
