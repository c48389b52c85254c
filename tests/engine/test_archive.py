"""The zip helpers: append a member; read the end record, first and last entries, members, with bounds."""

from __future__ import annotations

import io
import zipfile
import zlib

import pytest
import torch

from utils.training.engine import archive
from utils.training.engine.archive import (
    ArchiveError,
    NoEndRecordError,
    append_member,
    archive_root,
    end_record,
    first_entry,
    last_entry,
    read_entries,
    read_member,
)


def _torch_archive(**members) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer)
    for name, data in members.items():
        append_member(buffer, name, data)
    return buffer


class TestArchiveRoot:
    def test_first_component(self):
        assert archive_root(["ckpt/data.pkl", "ckpt/data/0"]) == "ckpt"
        assert archive_root([]) == ""


class TestAppendMember:
    def test_member_under_root_and_torch_still_loads(self):
        buffer = io.BytesIO()
        torch.save({"w": torch.ones(3)}, buffer)
        member = append_member(buffer, "meta.json", b"{}")
        assert member.endswith("/meta.json") and zipfile.ZipFile(buffer).read(member) == b"{}"
        buffer.seek(0)
        assert torch.equal(torch.load(buffer, weights_only=True)["w"], torch.ones(3))


class TestEntries:
    def test_first_and_last_entries_without_reading_the_directory(self):
        buffer = _torch_archive(**{"meta.json": b'{"a": 1}'})
        end = end_record(buffer)
        assert first_entry(buffer, end).name.endswith("/data.pkl")
        last = last_entry(buffer, end)
        assert (
            last.name.endswith("/meta.json")
            and read_member(buffer, last, end.directory_offset, 100) == b'{"a": 1}'
        )

    def test_read_entries_matches_zipfile(self):
        buffer = _torch_archive(**{"meta.json": b"{}"})
        entries = read_entries(buffer, end_record(buffer))
        assert list(entries) == zipfile.ZipFile(buffer).namelist()

    def test_entry_cap_refuses_a_huge_directory(self, monkeypatch):
        buffer = _torch_archive()
        monkeypatch.setattr(archive, "MAX_ENTRIES", 3)
        with pytest.raises(ArchiveError, match="refused: the zip directory holds"):
            end_record(buffer)

    def test_duplicate_names_are_refused(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            target.writestr("a/data.pkl", b"x")
            with pytest.warns(UserWarning):
                target.writestr("a/data.pkl", b"y")
        with pytest.raises(ArchiveError, match="two members are named"):
            read_entries(buffer, end_record(buffer))


class TestReadMember:
    def test_deflated_member_is_read_and_crc_checked(self):
        buffer = _torch_archive()
        with zipfile.ZipFile(buffer, "a") as target:
            target.writestr(f"{archive_root(target.namelist())}/m.json", b"x" * 1000, zipfile.ZIP_DEFLATED)
        end = end_record(buffer)
        assert read_member(buffer, last_entry(buffer, end), end.directory_offset, 1000) == b"x" * 1000

    def test_inflation_beyond_the_cap_is_refused(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            target.writestr("a/big", b"\0" * (1 << 20), zipfile.ZIP_DEFLATED)
        end = end_record(buffer)
        entry = first_entry(buffer, end)
        with pytest.raises(ArchiveError, match="refused: member 'a/big' holds"):
            read_member(buffer, entry, end.directory_offset, 1000)
        # a directory entry that lies about the size is caught by the member's own local header
        liar = archive.ZipEntry(
            entry.name, entry.method, entry.crc, entry.compressed_size, 10, entry.header_offset
        )
        with pytest.raises(ArchiveError, match="local header disagrees with the directory"):
            read_member(buffer, liar, end.directory_offset, 1000)

    def test_the_decompressor_stops_at_the_cap(self):
        # a member whose headers both lie is still stopped by the decompressor's own cap
        deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
        raw = deflated.compress(b"\0" * (1 << 20)) + deflated.flush()
        with pytest.raises(ArchiveError, match="inflates to more than 1,000 bytes"):
            archive._inflate(raw, "a/big", 1000)
        assert archive._inflate(raw, "a/big", 1 << 20) == b"\0" * (1 << 20)

    def test_other_compression_is_refused(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            target.writestr("a/x", b"hello", zipfile.ZIP_BZIP2)
        end = end_record(buffer)
        with pytest.raises(ArchiveError, match="method 12"):
            read_member(buffer, first_entry(buffer, end), end.directory_offset, 1000)

    def test_damaged_bytes_fail_the_crc(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            target.writestr("a/x", b"hello")
        data = bytearray(buffer.getvalue())
        data[data.index(b"hello")] = ord("j")
        damaged = io.BytesIO(bytes(data))
        end = end_record(damaged)
        with pytest.raises(ArchiveError, match="CRC-32"):
            read_member(damaged, first_entry(damaged, end), end.directory_offset, 1000)


class TestEndRecord:
    def test_present_in_a_complete_file(self):
        assert end_record(_torch_archive()).entries >= 1

    @pytest.mark.parametrize("cut", [1, 10, 21, 30])
    def test_missing_when_the_tail_is_cut(self, cut):
        data = _torch_archive().getvalue()[:-cut]
        with pytest.raises(NoEndRecordError):
            end_record(io.BytesIO(data))

    def test_missing_in_non_zip_data(self):
        with pytest.raises(NoEndRecordError):
            end_record(io.BytesIO(b"not a zip at all"))
