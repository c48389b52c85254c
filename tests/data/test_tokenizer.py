"""Tokenizers: bytes offline, gpt2 through the optional tiktoken, the vocabulary check."""

from __future__ import annotations

import sys
import types

import pytest

from utils.data.tokenizer import ByteTokenizer, TokenizerUnavailableError, check_vocab_fits, get_tokenizer
from utils.model import config_for_preset


class TestByteTokenizer:
    def test_round_trip_with_non_ascii(self):
        tokenizer = ByteTokenizer()
        assert tokenizer.decode(tokenizer.encode("Héllo, wörld ✓")) == "Héllo, wörld ✓"

    def test_broken_utf8_and_out_of_range_ids_become_replacement_chars(self):
        assert ByteTokenizer().decode([104, 0xC3, 105, 999]) == "h\ufffdi\ufffd"

    def test_vocab_size(self):
        assert ByteTokenizer().vocab_size == 256


class TestGetTokenizer:
    def test_default_is_bytes(self):
        assert get_tokenizer().name == "bytes"

    def test_unknown_name(self):
        with pytest.raises(ValueError, match="Unknown tokenizer 'words'"):
            get_tokenizer("words")

    def test_gpt2_without_tiktoken_says_what_to_do(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "tiktoken", None)  # import fails
        with pytest.raises(TokenizerUnavailableError, match=r"pip install tiktoken.*'bytes'"):
            get_tokenizer("gpt2")

    def test_gpt2_without_internet_says_what_to_do(self, monkeypatch):
        def offline(name):
            raise ConnectionError("no route to host")

        monkeypatch.setitem(sys.modules, "tiktoken", types.SimpleNamespace(get_encoding=offline))
        with pytest.raises(TokenizerUnavailableError, match=r"(?s)no route to host.*internet.*'bytes'"):
            get_tokenizer("gpt2")


class TestCheckVocabFits:
    def test_bytes_fit_every_preset(self):
        check_vocab_fits(ByteTokenizer(), config_for_preset("tiny"))
        check_vocab_fits(ByteTokenizer(), config_for_preset("gpt2"))

    def test_too_many_tokens_for_the_model(self):
        gpt2_like = types.SimpleNamespace(name="gpt2", vocab_size=50257)
        with pytest.raises(ValueError, match=r"(?s)50,257 tokens.*vocab_size is 256.*vocab_size=50257"):
            check_vocab_fits(gpt2_like, config_for_preset("tiny"))
