"""The zip helpers: append a member, read the last one without parsing the whole directory."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from utils.training.engine.archive import (
    NoEndRecordError,
    append_member,
    archive_root,
    has_end_record,
    read_last_member,
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


class TestReadLastMember:
    def test_reads_the_last_member(self):
        assert read_last_member(_torch_archive(**{"meta.json": b'{"a": 1}'}), "meta.json") == b'{"a": 1}'

    def test_none_when_last_member_is_another(self):
        buffer = _torch_archive(**{"meta.json": b"{}", "other.txt": b"x"})
        assert read_last_member(buffer, "meta.json") is None

    def test_none_for_plain_torch_file(self):
        assert read_last_member(_torch_archive(), "meta.json") is None

    def test_deflated_member(self):
        buffer = _torch_archive()
        with zipfile.ZipFile(buffer, "a") as archive:
            archive.writestr(f"{archive_root(archive.namelist())}/m.json", b"x" * 1000, zipfile.ZIP_DEFLATED)
        assert read_last_member(buffer, "m.json") == b"x" * 1000

    def test_crc_mismatch(self):
        buffer = _torch_archive(**{"meta.json": b'{"a": 1}'})
        data = buffer.getvalue().replace(b'{"a": 1}', b'{"a": 2}')
        with pytest.raises(ValueError, match="CRC"):
            read_last_member(io.BytesIO(data), "meta.json")

    @pytest.mark.parametrize("data", [b"", b"PK\x03\x04 only a start", b"\x80\x02 pickle"])
    def test_no_end_record(self, data):
        with pytest.raises(NoEndRecordError):
            read_last_member(io.BytesIO(data), "meta.json")

    def test_zip64_archive(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:  # > 65535 entries forces the zip64 end records
            for index in range(65_600):
                archive.writestr(f"root/data/{index}", b"")
            archive.writestr("root/meta.json", b"{}")
        assert b"PK\x06\x06" in buffer.getvalue()[-200:]
        assert read_last_member(buffer, "meta.json") == b"{}"


class TestHasEndRecord:
    def test_complete_archive(self):
        assert has_end_record(_torch_archive(**{"meta.json": b"{}"}))

    @pytest.mark.parametrize("cut", [1, 10, 21])
    def test_cut_inside_the_end_record(self, cut):
        data = _torch_archive().getvalue()
        assert not has_end_record(io.BytesIO(data[:-cut]))

    def test_comment_running_past_the_end(self):
        data = bytearray(_torch_archive().getvalue())
        data[-2:] = (40).to_bytes(2, "little")  # says a 40-byte comment follows; none does
        assert not has_end_record(io.BytesIO(bytes(data)))

    @pytest.mark.parametrize("data", [b"", b"\x80\x02 pickle"])
    def test_not_a_zip(self, data):
        assert not has_end_record(io.BytesIO(data))
