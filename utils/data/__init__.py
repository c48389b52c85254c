"""Data: tokenizers, the training text, and deterministic batches."""

from utils.data.batches import Batch, EpochBatches, split_tokens, validation_batches
from utils.data.corpus import DEFAULT_CORPUS_PATH, CorpusError, load_corpus
from utils.data.tokenizer import (
    TOKENIZER_NAMES,
    ByteTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    TokenizerUnavailableError,
    check_vocab_fits,
    get_tokenizer,
)

__all__ = [
    "Batch",
    "ByteTokenizer",
    "CorpusError",
    "DEFAULT_CORPUS_PATH",
    "EpochBatches",
    "TOKENIZER_NAMES",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerUnavailableError",
    "check_vocab_fits",
    "get_tokenizer",
    "load_corpus",
    "split_tokens",
    "validation_batches",
]
