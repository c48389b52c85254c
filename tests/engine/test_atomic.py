"""Atomic writes and the clean-up of temporary files left by killed writers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from utils.training.engine.atomic import (
    atomic_write,
    free_space_text,
    fsync_directory,
    remove_stale_temporary_files,
)
from utils.training.engine.naming import temporary_path_for


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


class TestAtomicWrite:
    def test_writes_the_file_and_nothing_else(self, tmp_path):
        atomic_write(tmp_path / "a.bin", lambda f: f.write(b"data"))
        assert os.listdir(tmp_path) == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"data"

    @pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
    def test_failure_keeps_the_old_file_and_removes_the_temporary(self, tmp_path, error):
        (tmp_path / "a.bin").write_bytes(b"old")

        def fail(file):
            file.write(b"half")
            raise error

        with pytest.raises(type(error)):
            atomic_write(tmp_path / "a.bin", fail)
        assert os.listdir(tmp_path) == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"old"


class TestFsyncDirectory:
    def test_missing_folder_is_not_an_error(self, tmp_path):
        assert fsync_directory(tmp_path / "missing") is None


class TestRemoveStaleTemporaryFiles:
    def test_only_dead_writers_files(self, tmp_path):
        stale = tmp_path / f".a.pt.tmp-{_dead_pid()}-00ff"
        live = temporary_path_for(tmp_path / "b.pt")
        other = tmp_path / "c.pt"
        for path in (stale, live, other):
            path.write_bytes(b"x")
        assert remove_stale_temporary_files(tmp_path) == [stale]
        assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])

    def test_missing_folder(self, tmp_path):
        assert remove_stale_temporary_files(tmp_path / "missing") == []

    def test_dead_writers_folders_too(self, tmp_path):
        stale = tmp_path / f".checkpoint_epoch0000_step000003_20250101_000000.tmp-{_dead_pid()}-00ff"
        live = temporary_path_for(tmp_path / "checkpoint_epoch0000_step000006_20250101_000000")
        for folder in (stale, live):
            folder.mkdir()
            (folder / "__0_0.distcp").write_bytes(b"x")
        assert remove_stale_temporary_files(tmp_path) == [stale]
        assert os.listdir(tmp_path) == [live.name]


class TestFreeSpaceText:
    def test_reports_gigabytes_even_for_a_folder_not_yet_created(self, tmp_path):
        assert free_space_text(tmp_path / "not" / "yet").endswith("GB free")
