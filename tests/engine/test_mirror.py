"""The mirror: verified atomic copies, in order, never blocking, retention only after a complete copy."""

from __future__ import annotations

import datetime as dt
import errno
import os
import threading
import zlib
from pathlib import Path

import pytest
import torch

from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.mirror import (
    Mirror,
    MirrorCopyError,
    MirrorFailure,
    MirrorStatus,
    copy_with_crc,
    mirror_copy,
    wait_for_mirrors,
)
from utils.training.engine.naming import is_temporary_file
from utils.training.engine.recovery import list_checkpoints
from utils.training.engine.retention import RetentionPolicy


def checkpoint(folder: Path, step: int, val_loss: float = 1.0) -> Path:
    """A small real checkpoint (retention only considers the engine's own files)."""
    return save_checkpoint(folder, {"w": torch.full((64,), float(step))}, epoch=0, global_step=step,
                           metrics={"val_loss": val_loss}, retention=None,
                           when=dt.datetime(2025, 1, 1, 0, 0, step))  # fmt: skip


def temporaries(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if is_temporary_file(name)]


def gated_copy(gate: threading.Event, started: threading.Event | None = None):
    """A copy that waits for ``gate`` first: a slow mirror, under the test's control."""

    def copy(source, target, buffer):
        if started is not None:
            started.set()
        gate.wait(30)
        return copy_with_crc(source, target, buffer)

    return copy


def failing_copy(names: set[str], code: int = errno.ENOSPC):
    """Writes half the bytes of the named files, then fails as a full Drive would."""

    def copy(source, target, buffer):
        if Path(source.name).name in names:
            target.write(source.read(100))
            raise OSError(code, os.strerror(code))
        return copy_with_crc(source, target, buffer)

    return copy


class TestCopyWithCrc:
    def test_copies_and_returns_the_crc32(self, tmp_path):
        data = os.urandom(50_000)
        (tmp_path / "a").write_bytes(data)
        with open(tmp_path / "a", "rb") as source, open(tmp_path / "b", "wb") as target:
            crc = copy_with_crc(source, target, bytearray(4096))
        assert crc == zlib.crc32(data) and (tmp_path / "b").read_bytes() == data


class TestMirrorCopy:
    def test_the_copy_is_byte_identical_and_nothing_else_is_left(self, tmp_path):
        source = checkpoint(tmp_path / "local", 1)
        copy = mirror_copy(source, tmp_path / "mirror")
        assert copy == tmp_path / "mirror" / source.name and copy.read_bytes() == source.read_bytes()
        assert os.listdir(tmp_path / "mirror") == [source.name]

    def test_a_copy_that_differs_is_refused_and_removed(self, tmp_path):
        source = checkpoint(tmp_path / "local", 1)

        def corrupting(reader, writer, buffer):
            crc = copy_with_crc(reader, writer, buffer)
            reader.seek(1000)
            writer.seek(1000)
            writer.write(bytes([reader.read(1)[0] ^ 0xFF]))  # one byte changed on its way, same size
            return crc

        with pytest.raises(MirrorCopyError, match="the copy differs from the local file"):
            mirror_copy(source, tmp_path / "mirror", copy=corrupting)
        assert os.listdir(tmp_path / "mirror") == []

    def test_a_failed_copy_keeps_the_earlier_file_of_that_name(self, tmp_path):
        source = checkpoint(tmp_path / "local", 1)
        earlier = mirror_copy(source, tmp_path / "mirror").read_bytes()
        with pytest.raises(OSError, match="No space left on device"):
            mirror_copy(source, tmp_path / "mirror", copy=failing_copy({source.name}))
        assert (tmp_path / "mirror" / source.name).read_bytes() == earlier and not temporaries(
            tmp_path / "mirror"
        )

    def test_a_missing_source_raises_file_not_found(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            mirror_copy(tmp_path / "gone.pt", tmp_path / "mirror")


class TestMirrorEnqueue:
    def test_copies_every_file_in_order_byte_identical(self, tmp_path):
        sources = [checkpoint(tmp_path / "local", step) for step in (1, 2, 3)]
        mirror = Mirror(tmp_path / "mirror", retention=None)
        for source in sources:
            mirror.enqueue(source)
        assert mirror.wait(30)
        status = mirror.status()
        assert status.copied == tuple(source.name for source in sources) and status.up_to_date
        assert all((tmp_path / "mirror" / s.name).read_bytes() == s.read_bytes() for s in sources)

    def test_returns_at_once_while_a_copy_is_slow(self, tmp_path):
        gate, started = threading.Event(), threading.Event()
        mirror = Mirror(tmp_path / "mirror", copy=gated_copy(gate, started))
        mirror.enqueue(checkpoint(tmp_path / "local", 1))
        assert started.wait(30)
        mirror.enqueue(checkpoint(tmp_path / "local", 2))  # returns although the first copy is stuck
        status = mirror.status()
        assert (status.copying, status.behind) == (sorted(os.listdir(tmp_path / "local"))[0], 2)
        assert status.short().startswith("mirror 2 behind (")
        gate.set()
        assert mirror.wait(30) and mirror.status().short() == "mirror ok"

    def test_retention_runs_on_the_mirror_after_each_copy(self, tmp_path):
        mirror = Mirror(tmp_path / "mirror", retention=RetentionPolicy(keep_best=1, keep_last=1))
        for step, val_loss in ((1, 0.5), (2, 2.0), (3, 3.0)):
            mirror.enqueue(checkpoint(tmp_path / "local", step, val_loss))
        mirror.wait(30)
        assert [info.global_step for info in list_checkpoints(tmp_path / "mirror")] == [1, 3]

    def test_never_deletes_on_the_mirror_before_the_successor_there_is_complete(self, tmp_path):
        first, second = checkpoint(tmp_path / "local", 1), checkpoint(tmp_path / "local", 2)
        mirror = Mirror(tmp_path / "mirror", RetentionPolicy(keep_best=0, keep_last=1),
                        copy=failing_copy({second.name}))  # fmt: skip
        mirror.enqueue(first)
        mirror.enqueue(second)
        mirror.wait(30)
        assert [info.path.name for info in list_checkpoints(tmp_path / "mirror")] == [first.name]
        assert not temporaries(tmp_path / "mirror")

    def test_a_file_deleted_locally_before_its_turn_is_skipped(self, tmp_path):
        gate, started = threading.Event(), threading.Event()
        mirror = Mirror(tmp_path / "mirror", retention=None, copy=gated_copy(gate, started))
        first, second = checkpoint(tmp_path / "local", 1), checkpoint(tmp_path / "local", 2)
        mirror.enqueue(first)
        started.wait(30)
        mirror.enqueue(second)
        second.unlink()  # local retention got there first
        gate.set()
        mirror.wait(30)
        status = mirror.status()
        assert (status.copied, status.skipped, status.failures) == ((first.name,), (second.name,), ())

    def test_a_failure_is_recorded_with_the_file_and_reason_and_the_next_file_is_copied(self, tmp_path):
        first, second = checkpoint(tmp_path / "local", 1), checkpoint(tmp_path / "local", 2)
        mirror = Mirror(tmp_path / "mirror", retention=None, copy=failing_copy({first.name}, errno.ENOTCONN))
        mirror.enqueue(first)
        mirror.enqueue(second)
        mirror.wait(30)
        status = mirror.status()
        assert status.copied == (second.name,)
        assert [(f.name, f.reason) for f in status.failures] == [
            (first.name, "copy failed: Transport endpoint is not connected")
        ]
        assert not temporaries(tmp_path / "mirror")


class TestMirrorTakeNewFailures:
    def test_each_failure_is_returned_once(self, tmp_path):
        source = checkpoint(tmp_path / "local", 1)
        mirror = Mirror(tmp_path / "mirror", copy=failing_copy({source.name}))
        mirror.enqueue(source)
        mirror.wait(30)
        assert [failure.name for failure in mirror.take_new_failures()] == [source.name]
        assert mirror.take_new_failures() == [] and len(mirror.status().failures) == 1


class TestMirrorRetryFailed:
    def test_copies_again_and_clears_the_failure(self, tmp_path):
        source = checkpoint(tmp_path / "local", 1)
        broken = {source.name}
        mirror = Mirror(tmp_path / "mirror", copy=failing_copy(broken))
        mirror.enqueue(source)
        mirror.wait(30)
        broken.clear()  # the Drive is back
        assert mirror.retry_failed() == 1
        mirror.wait(30)
        status = mirror.status()
        assert status.copied == (source.name,) and status.failures == ()
        assert (tmp_path / "mirror" / source.name).read_bytes() == source.read_bytes()

    def test_a_file_gone_locally_is_not_retried(self, tmp_path):
        source = checkpoint(tmp_path / "local", 1)
        mirror = Mirror(tmp_path / "mirror", copy=failing_copy({source.name}))
        mirror.enqueue(source)
        mirror.wait(30)
        source.unlink()
        assert mirror.retry_failed() == 0


class TestMirrorStatusLines:
    def test_says_what_is_behind_skipped_and_failed(self, tmp_path):
        status = MirrorStatus(tmp_path, ("a.pt",), ("c.pt",), "b.pt", ("s.pt",),
                              (MirrorFailure("f.pt", "copy failed: Disk quota exceeded"),), 42.0, 5e7)  # fmt: skip
        text = "\n".join(status.lines())
        assert "1 file(s) copied and verified, last copy 50 MB/s" in text
        assert "not in the mirror yet (42 s behind): b.pt, c.pt" in text
        assert "1 skipped: deleted locally by retention" in text
        assert "❌ f.pt: copy failed: Disk quota exceeded" in text and "The local files are complete" in text


class TestWaitForMirrors:
    def test_waits_for_every_mirror(self, tmp_path):
        gate = threading.Event()
        mirror = Mirror(tmp_path / "mirror", copy=gated_copy(gate))
        mirror.enqueue(checkpoint(tmp_path / "local", 1))
        threading.Timer(0.1, gate.set).start()
        statuses = wait_for_mirrors()
        assert any(s.folder == tmp_path / "mirror" and s.up_to_date and s.copied for s in statuses)
