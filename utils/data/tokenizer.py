"""Tokenizers: bytes (offline, the default) and GPT-2's BPE through the optional tiktoken.

Every tokenizer has ``name``, ``vocab_size``, ``encode(str) -> list[int]`` and
``decode(list[int]) -> str``. Decoding never raises on a bad id or a broken UTF-8
sequence: it shows U+FFFD instead, because an untrained model samples anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = [
    "Tokenizer",
    "ByteTokenizer",
    "TiktokenTokenizer",
    "TokenizerUnavailableError",
    "TOKENIZER_NAMES",
    "get_tokenizer",
    "check_vocab_fits",
]

TOKENIZER_NAMES = ("bytes", "gpt2")
_REPLACEMENT = "\ufffd"


class TokenizerUnavailableError(RuntimeError):
    """The requested tokenizer cannot be built here (package missing, no internet)."""


class Tokenizer(Protocol):
    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: 256 ids, no files, no download."""

    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text``."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """Text from byte ids; ids outside 0..255 and broken UTF-8 become U+FFFD."""
        out: list[str] = []
        run = bytearray()
        for token in (int(i) for i in ids):
            if 0 <= token < 256:
                run.append(token)
                continue
            out.append(run.decode("utf-8", errors="replace") + _REPLACEMENT)
            run = bytearray()
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)


class TiktokenTokenizer:
    """GPT-2's byte-pair encoding (50,257 tokens) through tiktoken."""

    def __init__(self, encoding: Any, name: str) -> None:
        self._encoding = encoding
        self.name = name
        self.vocab_size = int(encoding.n_vocab)

    def encode(self, text: str) -> list[int]:
        """Token ids; special-token text such as ``<|endoftext|>`` is encoded as plain text."""
        return self._encoding.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text from ids; ids outside the vocabulary become U+FFFD."""
        ids = [int(i) for i in ids]
        parts, run = [], []
        for token in ids:
            if 0 <= token < self.vocab_size:
                run.append(token)
            else:
                parts.append(self._encoding.decode(run, errors="replace") + _REPLACEMENT)
                run = []
        parts.append(self._encoding.decode(run, errors="replace"))
        return "".join(parts)


def get_tokenizer(name: str = "bytes") -> Tokenizer:
    """The tokenizer called ``name``: ``"bytes"`` (default, offline) or ``"gpt2"`` (tiktoken).

    Raises:
        ValueError: an unknown name.
        TokenizerUnavailableError: ``"gpt2"`` without tiktoken installed, or when its
            vocabulary file cannot be downloaded (no internet).
    """
    if name == "bytes":
        return ByteTokenizer()
    if name != "gpt2":
        raise ValueError(f"Unknown tokenizer {name!r}; choose one of {list(TOKENIZER_NAMES)}")
    try:
        import tiktoken
    except ImportError as error:
        raise TokenizerUnavailableError(
            "Tokenizer 'gpt2' needs the tiktoken package, which is not installed.\n"
            "Fix: run `pip install tiktoken` (Colab: `!pip install tiktoken`), or use TOKENIZER = 'bytes', "
            "which works offline."
        ) from error
    try:
        encoding = tiktoken.get_encoding("gpt2")
    except Exception as error:  # tiktoken downloads its vocabulary on first use
        raise TokenizerUnavailableError(
            f"Tokenizer 'gpt2': tiktoken could not load its vocabulary ({type(error).__name__}: {error}).\n"
            "It downloads the file on first use, so this needs internet access once.\n"
            "Fix: allow internet access (or set TIKTOKEN_CACHE_DIR to a folder holding the file), "
            "or use TOKENIZER = 'bytes', which works offline."
        ) from error
    return TiktokenTokenizer(encoding, "gpt2")


def check_vocab_fits(tokenizer: Tokenizer, model_config: Any) -> None:
    """Check that every id the tokenizer produces has an embedding row in the model.

    Args:
        tokenizer: any tokenizer from :func:`get_tokenizer`.
        model_config: a GPTConfig (or anything with ``vocab_size``), or the vocab size itself.

    Raises:
        ValueError: the tokenizer has more tokens than the model's vocabulary.
    """
    model_vocab = int(getattr(model_config, "vocab_size", model_config))
    if tokenizer.vocab_size > model_vocab:
        raise ValueError(
            f"Tokenizer {tokenizer.name!r} has {tokenizer.vocab_size:,} tokens, but the model's "
            f"vocab_size is {model_vocab:,}: token ids above {model_vocab - 1} would have no embedding.\n"
            f"Fix: build the model with vocab_size={tokenizer.vocab_size} (e.g. "
            f"config_for_preset(MODEL_PRESET, vocab_size={tokenizer.vocab_size})), or pick a tokenizer "
            f"with at most {model_vocab:,} tokens (TOKENIZER = 'bytes' has 256)."
        )
