"""load_corpus: the bundled text and clear errors for unusable files."""

from __future__ import annotations

import pytest

from utils.data.corpus import DEFAULT_CORPUS_PATH, CorpusError, load_corpus


class TestLoadCorpus:
    def test_bundled_text_by_default(self):
        text = load_corpus()
        assert DEFAULT_CORPUS_PATH.is_file() and len(text) > 10_000 and "CORIOLANUS" in text

    def test_own_file(self, tmp_path):
        (tmp_path / "mine.txt").write_text("to be or not to be", encoding="utf-8")
        assert load_corpus(tmp_path / "mine.txt") == "to be or not to be"

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"(?s)nope\.txt: training text not found.*DATA_PATH"):
            load_corpus(tmp_path / "nope.txt")

    def test_empty_file(self, tmp_path):
        (tmp_path / "empty.txt").write_text("  \n")
        with pytest.raises(CorpusError, match="empty"):
            load_corpus(tmp_path / "empty.txt")

    def test_not_utf8(self, tmp_path):
        (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
        with pytest.raises(CorpusError, match=r"(?s)latin1\.txt: not UTF-8.*iconv"):
            load_corpus(tmp_path / "latin1.txt")

    def test_folder(self, tmp_path):
        with pytest.raises(CorpusError, match="is a folder"):
            load_corpus(tmp_path)
