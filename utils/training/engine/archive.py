"""The zip archive that ``torch.save`` writes: add a member, read the last one cheaply.

``torch.save`` writes a zip file whose members all live under one top folder
(the "archive root"): ``<root>/data.pkl``, ``<root>/data/0``, ... The engine
appends one small JSON member, ``<root>/checkpoint_meta.json``, as the *last*
entry. Reading it back must not depend on how many tensors the file holds, so
:func:`read_last_member` goes straight to the end of the file: the
end-of-central-directory record names where the directory ends, and the last
directory entry names where the member's bytes are. ``zipfile.ZipFile`` would
parse every directory entry first (thousands for a large model).
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from typing import BinaryIO

__all__ = ["NoEndRecordError", "append_member", "archive_root", "has_end_record", "read_last_member"]

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header (46 bytes)
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header (30 bytes)
_MAX_COMMENT = 0xFFFF
_ZIP64_MARK32 = 0xFFFFFFFF
# Our member's directory entry is tiny; a foreign archive whose last entry is
# larger than this simply does not hold it.
_LAST_ENTRY_WINDOW = 4096


class NoEndRecordError(ValueError):
    """The file has no zip end record: empty, truncated, or not a zip file."""


def archive_root(names: list[str]) -> str:
    """The top folder of a torch archive: the first path component of its first member."""
    return names[0].split("/", 1)[0] if names else ""


def append_member(file: BinaryIO, name: str, data: bytes) -> str:
    """Append ``<root>/<name>`` to the torch archive open in ``file`` (read+write).

    Returns:
        The full member name written.
    """
    file.seek(0)
    with zipfile.ZipFile(file, mode="a") as archive:
        member = f"{archive_root(archive.namelist())}/{name}"
        archive.writestr(member, data)
    return member


def read_last_member(file: BinaryIO, name: str) -> bytes | None:
    """The bytes of ``<root>/<name>`` when it is the archive's last directory entry.

    Reads the end record, the last directory entry and the member itself: a
    few kilobytes whatever the size of the archive.

    Returns:
        The member's bytes, or ``None`` when the last entry is another member
        (the caller then falls back to a full ``zipfile`` read).

    Raises:
        NoEndRecordError: no end-of-central-directory record (not a complete zip file).
        ValueError: the records are inconsistent (a damaged archive).
    """
    cd_offset, cd_size = _central_directory_span(file)
    entry = _last_central_entry(file, cd_offset, cd_size, name)
    if entry is None:
        return None
    method, crc, csize, local_offset = entry
    file.seek(local_offset)
    local = _LOCAL.unpack(_read_exactly(file, _LOCAL.size))
    if local[0] != b"PK\x03\x04":
        raise ValueError("the metadata member's local header is missing")
    file.seek(local_offset + _LOCAL.size + local[9] + local[10])
    data = _read_exactly(file, csize)
    if method == zipfile.ZIP_DEFLATED:
        data = zlib.decompress(data, -15)
    elif method != zipfile.ZIP_STORED:
        return None
    if zlib.crc32(data) != crc:
        raise ValueError("the metadata member fails its CRC check")
    return data


def _read_exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise ValueError("the archive ends early")
    return data


def has_end_record(file: BinaryIO) -> bool:
    """True when the file ends with a complete zip end-of-central-directory record.

    A torch zip file without one was cut short: its tail (the directory) was never written.
    """
    return _end_record(file) is not None


def _end_record(file: BinaryIO) -> tuple[int, tuple] | None:
    """(file offset, fields) of the end record, found within the longest comment of the end."""
    file_size = file.seek(0, 2)
    tail_start = max(0, file_size - (_EOCD.size + _MAX_COMMENT))
    file.seek(tail_start)
    tail = file.read()
    position = tail.rfind(b"PK\x05\x06")
    if position < 0 or len(tail) - position < _EOCD.size:
        return None
    fields = _EOCD.unpack_from(tail, position)
    if position + _EOCD.size + fields[7] > len(tail):  # its comment runs past the end: cut short
        return None
    return tail_start + position, fields


def _central_directory_span(file: BinaryIO) -> tuple[int, int]:
    """(offset, size) of the central directory, from the end record(s)."""
    found = _end_record(file)
    if found is None:
        raise NoEndRecordError("no zip end record")
    cd_end, fields = found
    cd_size, cd_offset = fields[5], fields[6]
    zip64 = _zip64_record(file, cd_end)  # torch always writes one; zipfile only for large archives
    if zip64 is not None:
        cd_end = zip64[0]
        if _ZIP64_MARK32 in (cd_size, cd_offset) or fields[4] == 0xFFFF:
            cd_offset, cd_size = zip64[1], zip64[2]
    if cd_offset + cd_size != cd_end:  # data prepended or appended: let zipfile decide
        raise ValueError("the central directory is not where the end record says")
    return cd_offset, cd_size


def _zip64_record(file: BinaryIO, eocd_at: int) -> tuple[int, int, int] | None:
    """(record offset, directory offset, directory size) of a zip64 end record, if any."""
    if eocd_at < _EOCD64_LOCATOR.size:
        return None
    file.seek(eocd_at - _EOCD64_LOCATOR.size)
    locator = _EOCD64_LOCATOR.unpack(_read_exactly(file, _EOCD64_LOCATOR.size))
    if locator[0] != b"PK\x06\x07":
        return None
    file.seek(locator[2])
    record = _EOCD64.unpack(_read_exactly(file, _EOCD64.size))
    if record[0] != b"PK\x06\x06":
        raise ValueError("zip64 end record missing")
    return locator[2], record[9], record[8]


def _last_central_entry(
    file: BinaryIO, cd_offset: int, cd_size: int, name: str
) -> tuple[int, int, int, int] | None:
    """(method, crc, compressed size, local header offset) of the last entry, if it is ``name``."""
    window = min(cd_size, _LAST_ENTRY_WINDOW)
    file.seek(cd_offset + cd_size - window)
    block = _read_exactly(file, window)
    position = block.rfind(b"PK\x01\x02")
    while position >= 0:
        fields = _CENTRAL.unpack_from(block, position) if len(block) - position >= _CENTRAL.size else None
        if fields is not None and position + _CENTRAL.size + sum(fields[10:13]) == len(block):
            return _entry_if_named(block, position, fields, name)
        position = block.rfind(b"PK\x01\x02", 0, position)
    return None


def _entry_if_named(block: bytes, position: int, fields: tuple, name: str):
    name_len, extra_len = fields[10], fields[11]
    start = position + _CENTRAL.size
    member = block[start : start + name_len].decode("utf-8", "replace")
    if member.count("/") != 1 or member.split("/", 1)[1] != name:
        return None
    method, crc, csize, usize, offset = fields[4], fields[7], fields[8], fields[9], fields[16]
    extra = block[start + name_len : start + name_len + extra_len]
    csize, offset = _apply_zip64_extra(extra, usize, csize, offset)
    return method, crc, csize, offset


def _apply_zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int]:
    """Replace 32-bit placeholders by the 64-bit values of the zip64 extra field."""
    while len(extra) >= 4:
        tag, size = struct.unpack_from("<2H", extra)
        if tag == 0x0001:
            values = list(struct.unpack_from(f"<{size // 8}Q", extra, 4))
            if usize == _ZIP64_MARK32:
                values.pop(0)
            if csize == _ZIP64_MARK32:
                csize = values.pop(0)
            if offset == _ZIP64_MARK32:
                offset = values.pop(0)
        extra = extra[4 + size :]
    return csize, offset
