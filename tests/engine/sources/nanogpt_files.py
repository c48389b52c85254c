"""nanoGPT's ``ckpt.pt`` and forward pass, from the layout its ``train.py`` and ``model.py`` document.

nanoGPT is not a package and its code may not be copied here, so the file is built from
what ``train.py`` saves (``model``, ``optimizer``, ``model_args``, ``iter_num``,
``best_val_loss`` -- a 0-dim tensor from ``estimate_loss`` --, ``config``), with random
tensors of the shapes ``model.py``'s modules have. The reference forward pass is written
here from the architecture ``model.py`` documents (pre-LayerNorm blocks with eps 1e-5,
causal softmax attention scaled by 1/sqrt(head size), exact GELU, ``lm_head`` tied to
``wte``), as plain functions of the state dict: it shares no code with ``utils.model.gpt``,
so agreeing logits show that our GPT computes nanoGPT's model, not merely itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.nn import functional as F

MODEL_ARGS = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, bias=True, vocab_size=64, dropout=0.0)
TRAIN_CONFIG = {"out_dir": "out-shakespeare", "eval_interval": 250, "learning_rate": 1e-3, "batch_size": 12,
                "compile": True, "dataset": "shakespeare_char", "dtype": "bfloat16"}  # fmt: skip


def nanogpt_state(
    args: dict = MODEL_ARGS, seed: int = 0, mask_buffers: bool = False
) -> dict[str, torch.Tensor]:
    """``GPT.state_dict()`` of nanoGPT's model.py: names, shapes, the tied head (one tensor, two names)."""
    generator = torch.Generator().manual_seed(seed)
    C, V, T = args["n_embd"], args["vocab_size"], args["block_size"]

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    wte = rand(V, C)
    state = {"transformer.wte.weight": wte, "transformer.wpe.weight": rand(T, C)}
    for i in range(args["n_layer"]):
        h = f"transformer.h.{i}."
        for module, (rows, cols) in (("attn.c_attn", (3 * C, C)), ("attn.c_proj", (C, C)),
                                     ("mlp.c_fc", (4 * C, C)), ("mlp.c_proj", (C, 4 * C))):  # fmt: skip
            state[h + module + ".weight"] = rand(rows, cols)
            if args["bias"]:
                state[h + module + ".bias"] = rand(rows)
        for norm in ("ln_1", "ln_2"):
            state[h + norm + ".weight"] = 1 + rand(C)
            if args["bias"]:
                state[h + norm + ".bias"] = rand(C)
        if mask_buffers:  # model.py without flash attention registers the causal mask as "bias"
            state[h + "attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    state["transformer.ln_f.weight"] = 1 + rand(C)
    if args["bias"]:
        state["transformer.ln_f.bias"] = rand(C)
    state["lm_head.weight"] = wte
    return state


def write_ckpt(
    path: Path, state: dict, *, iter_num: int = 500, best_val_loss: float = 1.4697, prefix: str = "", **args
) -> Path:
    """``torch.save`` of train.py's checkpoint dict (``prefix="_orig_mod."``: a compiled model's names)."""
    parameters = [torch.nn.Parameter(t.clone()) for n, t in state.items() if not n.endswith("attn.bias")]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    for parameter in parameters:
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    checkpoint = {
        "model": {prefix + name: tensor for name, tensor in state.items()},
        "optimizer": optimizer.state_dict(),
        "model_args": {**MODEL_ARGS, **args},
        "iter_num": iter_num,
        "best_val_loss": torch.tensor(best_val_loss),
        "config": TRAIN_CONFIG,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def reference_logits(state: dict, args: dict, idx: torch.Tensor) -> torch.Tensor:
    """nanoGPT's forward pass (eval mode), as plain functions of its state dict."""
    B, T = idx.shape
    C, H = args["n_embd"], args["n_head"]

    def norm(x, name):
        return F.layer_norm(x, (C,), state[name + ".weight"], state.get(name + ".bias"), 1e-5)

    def linear(x, name):
        return x @ state[name + ".weight"].T + (state[name + ".bias"] if name + ".bias" in state else 0)

    causal = torch.ones(T, T).tril().bool()
    x = state["transformer.wte.weight"][idx] + state["transformer.wpe.weight"][:T]
    for i in range(args["n_layer"]):
        h = f"transformer.h.{i}."
        q, k, v = linear(norm(x, h + "ln_1"), h + "attn.c_attn").split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        y = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
        x = x + linear(y.transpose(1, 2).reshape(B, T, C), h + "attn.c_proj")
        x = x + linear(F.gelu(linear(norm(x, h + "ln_2"), h + "mlp.c_fc")), h + "mlp.c_proj")
    return norm(x, "transformer.ln_f") @ state["lm_head.weight"].T
