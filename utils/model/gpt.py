"""A GPT language model with nanoGPT's parameter names, shapes and initialisation.

The names (``transformer.wte``, ``transformer.h.N.attn.c_attn``, ``lm_head``, ...) match
nanoGPT's, so its checkpoints and ours load into each other. Attention goes through
``F.scaled_dot_product_attention(is_causal=True)``: no causal-mask buffer, so the
``state_dict`` holds exactly the parameters (plus the tied ``lm_head.weight``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "GPTConfig",
    "PRESETS",
    "config_for_preset",
    "GPT",
    "ParameterCounts",
    "count_parameters",
]

# activation name -> nn.GELU's ``approximate`` argument
ACTIVATIONS = {"gelu": "none", "gelu_tanh": "tanh"}


@dataclass
class GPTConfig:
    """Everything needed to rebuild the model; stored in every checkpoint as a plain dict.

    Defaults are GPT-2 small (124M), so an old config missing a key still means the same model.
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    # "gelu" (exact, nanoGPT's and ours) or "gelu_tanh" (GPT-2's tanh approximation, which Hugging
    # Face's checkpoints were trained with); configs written before this field mean "gelu".
    activation: str = "gelu"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"GPTConfig.activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (ints, float, bool): safe for ``torch.load(weights_only=True)`` and JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        """Rebuild a config from ``to_dict()`` output.

        Missing keys take the defaults (GPT-2 small), so older checkpoints still load.

        Raises:
            ValueError: ``data`` is not a dict, or has keys this version does not know.
        """
        if not isinstance(data, dict):
            raise ValueError(f"GPTConfig.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"GPTConfig.from_dict: unknown keys {unknown}; known keys are {sorted(known)}. "
                "The config was written by a different model class or a newer version of this code."
            )
        return cls(**data)


PRESETS: dict[str, GPTConfig] = {
    # GPT-2 small: 124,439,808 parameters (lm_head tied to wte). Needs a GPU to train.
    "gpt2": GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0),
    # A few hundred thousand parameters over bytes: an epoch takes seconds on a CPU.
    "small-cpu": GPTConfig(vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.1),
    # The smallest model that still learns: tests and headless runs.
    "tiny": GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.1),
}


def config_for_preset(name: str, **overrides: Any) -> GPTConfig:
    """A fresh copy of the preset ``name`` with ``overrides`` applied.

    Raises:
        ValueError: unknown preset name or unknown override key.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return GPTConfig.from_dict({**PRESETS[name].to_dict(), **overrides})


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout_p = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        dropout_p = self.attn_dropout_p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate=ACTIVATIONS[config.activation])
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The GPT model. ``model.config`` is the :class:`GPTConfig` it was built from."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: one tensor, listed once by named_parameters() as transformer.wte.weight.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections (nanoGPT, model.py).
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and the mean cross-entropy when ``targets`` is given.

        Args:
            idx: token ids, shape (B, T) with T <= block_size.
            targets: next-token ids, shape (B, T); -1 marks positions to ignore.

        Returns:
            ``(logits, loss)``: logits (B, T, vocab_size); loss a scalar or None.

        Raises:
            ValueError: the sequence is longer than ``block_size``.
        """
        _, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"Sequence of length {T} is longer than block_size {self.config.block_size}")
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab_size)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens.

        Runs in eval mode (no dropout) and restores the previous mode. With a
        ``generator``, sampling draws only from it, so the global RNG (and with it a
        training run's reproducibility) is untouched; the generator may live on the
        CPU even when the model is on a GPU.

        Raises:
            ValueError: temperature <= 0, top_k < 1, or max_new_tokens < 0.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                idx_cond = idx[:, -self.config.block_size :]
                logits, _ = self(idx_cond)
                next_id = _sample(logits[:, -1, :] / temperature, top_k, generator)
                idx = torch.cat((idx, next_id.to(idx.device)), dim=1)
        finally:
            self.train(was_training)
        return idx


def _sample(logits: torch.Tensor, top_k: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """One token id per row, from softmax(logits) restricted to the top k."""
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], float("-inf"))
    probs = F.softmax(logits.float(), dim=-1)
    if generator is not None:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@dataclass(frozen=True)
class ParameterCounts:
    """Parameter totals; a tensor shared by two modules (tied weights) counts once."""

    total: int
    trainable: int
    frozen: int


def count_parameters(model: nn.Module) -> ParameterCounts:
    """Count ``model``'s parameters, each shared tensor once (``parameters()`` de-duplicates)."""
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return ParameterCounts(total=total, trainable=trainable, frozen=total - trainable)
