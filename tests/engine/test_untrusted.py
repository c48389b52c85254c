"""The reading boundary: regular files only, symlinks reported, capped reads, no bytes echoed."""

from __future__ import annotations

import os

import pytest

from utils.training.engine.errors import CheckpointError, CheckpointNotFoundError, NotACheckpointError
from utils.training.engine.untrusted import folder_entries, open_untrusted, read_small_file


class TestOpenUntrusted:
    def test_regular_file(self, tmp_path):
        (tmp_path / "a.pt").write_bytes(b"hello")
        with open_untrusted(tmp_path / "a.pt") as handle:
            assert (handle.size, handle.head(2), handle.read_at(1, 3), handle.link_target) == (
                5,
                b"he",
                b"ell",
                None,
            )

    def test_fifo_is_refused_without_blocking(self, tmp_path):
        os.mkfifo(tmp_path / "checkpoint.pt")  # open() for reading would wait for a writer forever
        with pytest.raises(NotACheckpointError, match=r"named pipe \(FIFO\).*refused without reading"):
            with open_untrusted(tmp_path / "checkpoint.pt"):
                pass

    def test_symlink_to_a_device_is_refused(self, tmp_path):
        (tmp_path / "zero.pt").symlink_to("/dev/zero")
        with pytest.raises(NotACheckpointError, match="character device"):
            with open_untrusted(tmp_path / "zero.pt"):
                pass

    def test_symlink_to_a_file_is_followed_and_reported(self, tmp_path):
        (tmp_path / "real.pt").write_bytes(b"x")
        (tmp_path / "link.pt").symlink_to(tmp_path / "real.pt")
        with open_untrusted(tmp_path / "link.pt") as handle:
            assert handle.link_target == (tmp_path / "real.pt").resolve()

    def test_folder_missing_and_broken_link(self, tmp_path):
        (tmp_path / "gone.pt").symlink_to(tmp_path / "nowhere")
        for path, message in ((tmp_path, "is a folder"), (tmp_path / "no.pt", "does not exist"),
                              (tmp_path / "gone.pt", "broken symbolic link")):  # fmt: skip
            with pytest.raises(CheckpointNotFoundError, match=message):
                with open_untrusted(path):
                    pass

    def test_symlink_loop(self, tmp_path):
        (tmp_path / "a.pt").symlink_to(tmp_path / "b.pt")
        (tmp_path / "b.pt").symlink_to(tmp_path / "a.pt")
        with pytest.raises(CheckpointNotFoundError, match="loop of symbolic links"):
            with open_untrusted(tmp_path / "a.pt"):
                pass

    def test_read_beyond_the_end_is_refused(self, tmp_path):
        (tmp_path / "a.pt").write_bytes(b"abc")
        with (
            open_untrusted(tmp_path / "a.pt") as handle,
            pytest.raises(CheckpointError, match="asks for bytes"),
        ):
            handle.read_at(1, 10)

    def test_memory_map_is_private(self, tmp_path):
        (tmp_path / "a.pt").write_bytes(b"abcd")
        with open_untrusted(tmp_path / "a.pt") as handle:
            mapped = handle.memory_map()
            mapped[0] = ord("z")  # copy-on-write: the file keeps its bytes
        assert (tmp_path / "a.pt").read_bytes() == b"abcd"


class TestReadSmallFile:
    def test_capped(self, tmp_path):
        (tmp_path / "config.json").write_bytes(b"x" * 100)
        assert read_small_file(tmp_path / "config.json", 100) == b"x" * 100
        with pytest.raises(CheckpointError, match="refused: 100 bytes, more than the 99"):
            read_small_file(tmp_path / "config.json", 99)


class TestFolderEntries:
    def test_sorted_and_capped(self, tmp_path):
        for name in "cab":
            (tmp_path / name).write_text("")
        assert folder_entries(tmp_path) == ["a", "b", "c"]
        assert len(folder_entries(tmp_path, limit=2)) == 2


class TestErrorsPrintSafely:
    def test_every_part_of_a_message_is_escaped_but_its_line_breaks(self):
        from utils.training.engine.errors import CorruptCheckpointError

        error = CorruptCheckpointError(
            "x\x1b.pt", "bad \x1b[2J name\nsecond line", expected="\u202e", fix="\x07"
        )
        text = str(error)
        assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
        assert text.splitlines()[:2] == ["x\\x1b.pt: bad \\x1b[2J name", "second line"]
